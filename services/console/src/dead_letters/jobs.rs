//! Bulk actions run as jobs: started by a request, paced by the replay rate, watched by polling.
//! The last [`KEPT`] jobs are kept in memory.

use circulatory::sync::MutexExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

const KEPT: usize = 50;

/// A bulk action's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    /// `retry` or `discard`.
    pub action: String,
    pub group: Option<String>,
    pub actor: String,
    pub total: u64,
    pub done: u64,
    pub replayed: u64,
    pub discarded: u64,
    /// Replayed too often already: set aside, not replayed.
    pub quarantined: u64,
    /// Gone from the topic, or the action failed (see `errors`).
    pub failed: u64,
    pub errors: Vec<String>,
    pub finished: bool,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

#[derive(Default, Clone)]
pub struct Jobs {
    jobs: Arc<Mutex<VecDeque<Job>>>,
}

impl Jobs {
    pub fn start(&self, job: Job) {
        let mut jobs = self.jobs.locked();
        jobs.push_front(job);
        jobs.truncate(KEPT);
    }

    pub fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        let mut jobs = self.jobs.locked();
        if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
            change(job);
        }
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        let jobs = self.jobs.locked();
        jobs.iter().find(|j| j.id == id).cloned()
    }

    pub fn list(&self) -> Vec<Job> {
        self.jobs.locked().iter().cloned().collect()
    }

    /// Whether a job is still running (one bulk action at a time).
    pub fn running(&self) -> Option<Job> {
        let jobs = self.jobs.locked();
        jobs.iter().find(|j| !j.finished).cloned()
    }
}
