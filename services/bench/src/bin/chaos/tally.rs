//! The ingest side of a fault run: what the clients were told (the outcomes) against what the
//! topics hold (the read-back).

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use crate::marks::round3;
use crate::outcome::Outcome;
use crate::readback::Readback;

/// How many sample ids a row lists per finding.
const SAMPLES: usize = 5;

pub(crate) struct Tally<'a> {
    pub(crate) outcomes: &'a [Outcome],
    pub(crate) readback: &'a Readback,
    /// The topics the ingest writes the run's events to.
    pub(crate) topics: &'a HashSet<String>,
    /// When the fault was injected, epoch ms.
    pub(crate) fault_ms: Option<f64>,
    /// An acknowledgement slower than this counts as impaired (ms).
    pub(crate) slow_ms: f64,
}

impl Tally<'_> {
    /// Copies of an event in the topics the ingest writes to.
    fn copies(&self, id: &str) -> usize {
        self.topics
            .iter()
            .map(|t| self.readback.copies_in(id, t))
            .sum()
    }

    pub(crate) fn row(&self) -> Value {
        let mut row = self.counts();
        let fields = row.as_object_mut().expect("an object");
        for part in [self.written(), self.window_503(), self.recovery()] {
            if let Value::Object(part) = part {
                fields.extend(part);
            }
        }
        row
    }

    fn counts(&self) -> Value {
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        for o in self.outcomes {
            *statuses.entry(o.status.to_string()).or_default() += 1;
            if let Some(code) = o.error_code {
                *codes.entry(code.to_string()).or_default() += 1;
            }
        }
        let count = |f: fn(&Outcome) -> bool| self.outcomes.iter().filter(|o| f(o)).count();
        json!({
            "sent": self.outcomes.len(),
            "acknowledged": count(Outcome::acknowledged),
            "refused": count(Outcome::refused),
            "unanswered": count(Outcome::unanswered),
            "statuses": statuses,
            "error_codes": codes,
        })
    }

    /// Lost and duplicated ids; and 202s whose partition/offset holds no copy.
    fn written(&self) -> Value {
        let (mut lost, mut dup, mut dup_acked, mut extra, mut offset_mismatch) =
            (Vec::new(), Vec::new(), 0, 0, 0);
        for o in self.outcomes {
            let copies = self.copies(&o.id);
            if o.acknowledged() && copies == 0 {
                lost.push(o.id.clone());
            }
            if copies > 1 {
                dup.push(o.id.clone());
                extra += copies - 1;
                dup_acked += usize::from(o.acknowledged());
            }
            if o.acknowledged() && copies > 0 && !self.at_acked_offset(o) {
                offset_mismatch += 1;
            }
        }
        let samples: Vec<Value> = dup
            .iter()
            .take(SAMPLES)
            .map(|id| self.positions(id))
            .collect();
        let mut row = json!({
            "lost": lost.len(),
            "lost_sample": lost.iter().take(SAMPLES).collect::<Vec<_>>(),
            "duplicated": dup.len(),
            "duplicated_acknowledged": dup_acked,
            "duplicate_extra_copies": extra,
            "duplicates_sample": samples,
            "ack_offset_without_copy": offset_mismatch,
        });
        if let (Value::Object(row), Value::Object(refused)) = (&mut row, self.refused_written()) {
            row.extend(refused);
        }
        row
    }

    /// Refused and unanswered requests whose event the topics hold, by error code and by the
    /// partition holding it.
    fn refused_written(&self) -> Value {
        let (mut refused, mut unanswered) = (0, 0);
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_partition: BTreeMap<String, u64> = BTreeMap::new();
        for o in self.outcomes.iter().filter(|o| !o.acknowledged()) {
            let found = self.readback.by_id.get(&o.id);
            let Some(copy) = found.and_then(|c| c.iter().find(|c| self.topics.contains(&c.topic)))
            else {
                continue;
            };
            if o.unanswered() {
                unanswered += 1;
                continue;
            }
            refused += 1;
            let code = o.error_code.map_or(o.status.to_string(), |c| c.to_string());
            *by_code.entry(code).or_default() += 1;
            *by_partition
                .entry(format!("{}/{}", copy.topic, copy.partition))
                .or_default() += 1;
        }
        json!({
            "refused_written": refused,
            "refused_written_by_code": by_code,
            "refused_written_by_partition": by_partition,
            "unanswered_written": unanswered,
        })
    }

    fn at_acked_offset(&self, o: &Outcome) -> bool {
        let (Some(partition), Some(offset)) = (o.partition, o.offset) else {
            return true;
        };
        self.readback.by_id.get(&o.id).is_some_and(|copies| {
            copies
                .iter()
                .any(|c| c.partition == partition && c.offset == offset)
        })
    }

    fn positions(&self, id: &str) -> Value {
        let copies = self.readback.by_id.get(id).cloned().unwrap_or_default();
        let at: Vec<String> = copies
            .iter()
            .map(|c| format!("{}/{}@{}", c.topic, c.partition, c.offset))
            .collect();
        json!({"id": id, "copies": at})
    }

    /// First to last 503 answer, seconds; and when the first came relative to the fault.
    fn window_503(&self) -> Value {
        let times: Vec<f64> = self
            .outcomes
            .iter()
            .filter(|o| o.status == 503)
            .map(|o| o.done_ms)
            .collect();
        let first = times.iter().copied().reduce(f64::min);
        let last = times.iter().copied().reduce(f64::max);
        json!({
            "count_503": times.len(),
            "window_503_s": first.zip(last).map(|(a, b)| round3((b - a) / 1000.0)),
            "first_503_after_fault_s": first.zip(self.fault_ms).map(|(a, f)| round3((a - f) / 1000.0)),
            "last_503_after_fault_s": last.zip(self.fault_ms).map(|(a, f)| round3((a - f) / 1000.0)),
        })
    }

    /// Two recoveries from the fault: writes accepted again (the first 202 answered after the
    /// last refused or unanswered request; 0 when none failed) and the end of any impairment
    /// (the answer of the last request refused, unanswered or acknowledged slower than
    /// `slow_ms`; 0 when none was impaired).
    fn recovery(&self) -> Value {
        let impaired = |o: &&Outcome| !o.acknowledged() || o.latency_ms() > self.slow_ms;
        let failed = |o: &&Outcome| !o.acknowledged();
        let slow = self
            .outcomes
            .iter()
            .filter(|o| o.acknowledged() && o.latency_ms() > self.slow_ms)
            .count();
        let mut latencies: Vec<f64> = self
            .outcomes
            .iter()
            .filter(|o| o.acknowledged())
            .map(Outcome::latency_ms)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let since = |t: f64| self.fault_ms.map(|f| round3((t - f) / 1000.0));
        let last_impaired = self.last_after_fault(impaired);
        let accepted_again = self.last_after_fault(failed).map(|last| {
            self.outcomes
                .iter()
                .filter(|o| o.acknowledged() && o.done_ms > last)
                .map(|o| o.done_ms)
                .reduce(f64::min)
                .unwrap_or(last)
        });
        let fault = self.fault_ms.unwrap_or(0.0);
        json!({
            "ingest_recover_s": self.fault_ms.map(|_| accepted_again.and_then(since).unwrap_or(0.0)),
            "impaired_until_s": self.fault_ms.map(|_| last_impaired.and_then(since).unwrap_or(0.0)),
            "slow_ms": self.slow_ms,
            "acknowledged_slow": slow,
            "acknowledged_slow_before_fault": self.outcomes.iter().filter(|o| {
                o.acknowledged() && o.latency_ms() > self.slow_ms && o.done_ms < fault
            }).count(),
            "ack_p50_ms": percentile(&latencies, 0.50),
            "ack_p99_ms": percentile(&latencies, 0.99),
            "ack_max_ms": latencies.last().map(|v| round3(*v)),
        })
    }

    /// The latest answer, at or after the fault, of a request matching `pick`.
    fn last_after_fault(&self, pick: impl Fn(&&Outcome) -> bool) -> Option<f64> {
        let fault = self.fault_ms?;
        self.outcomes
            .iter()
            .filter(pick)
            .filter(|o| o.done_ms >= fault)
            .map(|o| o.done_ms)
            .reduce(f64::max)
    }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(round3(sorted[index]))
}
