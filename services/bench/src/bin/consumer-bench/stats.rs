//! Percentiles of a sample (nearest rank), as JSON.

use serde_json::{json, Value};

/// The nearest-rank percentile `p` (0–100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round3(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

/// `{count, min, p50, p90, p99, p99_9, max, mean}` of the values (rounded to 3 decimals).
pub(crate) fn summary(values: &[f64]) -> Value {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let mean = (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64);
    json!({
        "count": sorted.len(),
        "min": round3(sorted.first().copied()),
        "p50": round3(percentile(&sorted, 50.0)),
        "p90": round3(percentile(&sorted, 90.0)),
        "p99": round3(percentile(&sorted, 99.0)),
        "p99_9": round3(percentile(&sorted, 99.9)),
        "max": round3(sorted.last().copied()),
        "mean": round3(mean),
    })
}
