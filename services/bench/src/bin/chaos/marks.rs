//! The fault's timeline as `scripts/chaos` wrote it: one `<epoch ms> <name> [note]` line per
//! step, e.g. `fault` (the kill), `restart` (the killed process started again), `back` (the
//! service answers again).

use std::path::Path;

#[derive(Debug, Default)]
pub(crate) struct Marks {
    entries: Vec<(String, f64, String)>,
}

impl Marks {
    /// The marks file; a missing file is an empty timeline.
    pub(crate) fn load(path: &Path) -> Result<Marks, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Marks::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut entries = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.splitn(3, ' ');
            let at = parts.next().and_then(|t| t.parse::<f64>().ok());
            let name = parts.next();
            let (Some(at), Some(name)) = (at, name) else {
                return Err(format!("{}: bad mark line `{line}`", path.display()));
            };
            let note = parts.next().unwrap_or("").to_string();
            entries.push((name.to_string(), at, note));
        }
        Ok(Marks { entries })
    }

    /// The time of the first mark of that name.
    pub(crate) fn at(&self, name: &str) -> Option<f64> {
        self.entries.iter().find(|(n, ..)| n == name).map(|e| e.1)
    }

    /// Every mark as JSON, times relative to `origin` in seconds.
    pub(crate) fn timeline(&self, origin: f64) -> serde_json::Value {
        self.entries
            .iter()
            .map(|(name, at, note)| {
                serde_json::json!({
                    "mark": name,
                    "t_s": round3((at - origin) / 1000.0),
                    "note": note,
                })
            })
            .collect()
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
