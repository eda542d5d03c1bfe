//! What happened to one request: written by `load` (one JSON line each), read by `verify`.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One event's request and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub(crate) id: String,
    pub(crate) event_type: String,
    /// The user id or payment id the event carries.
    pub(crate) entity: String,
    /// When the request was sent and when its answer (or transport error) came, epoch ms.
    pub(crate) sent_ms: f64,
    pub(crate) done_ms: f64,
    /// HTTP status; 0 when no answer came (connection error, client timeout).
    pub(crate) status: u16,
    /// The problem document's `error_code`, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error_code: Option<u64>,
    /// The transport error, when unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Where the 202 says the event was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) offset: Option<i64>,
}

impl Outcome {
    /// Acknowledged: the broker has it (202, or 200 for an idempotent replay).
    pub(crate) fn acknowledged(&self) -> bool {
        self.status == 202 || self.status == 200
    }

    /// An HTTP answer that is not an acknowledgement.
    pub(crate) fn refused(&self) -> bool {
        self.status != 0 && !self.acknowledged()
    }

    pub(crate) fn unanswered(&self) -> bool {
        self.status == 0
    }

    pub(crate) fn latency_ms(&self) -> f64 {
        self.done_ms - self.sent_ms
    }
}

pub(crate) fn write_all(path: &Path, outcomes: &[Outcome]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    for outcome in outcomes {
        let line = serde_json::to_string(outcome).map_err(|e| e.to_string())?;
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

pub(crate) fn read_all(path: &Path) -> Result<Vec<Outcome>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut outcomes = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let outcome = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
