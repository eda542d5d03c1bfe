//! Human durations as written in `topics.yaml` (`250ms`, `4s`, `2m`, `1h`, `7d`).
//!
//! Retry topic names embed the delay (`<group>.retry.4s`), so formatting is canonical: the same
//! delay always prints the same way, whichever unit it was written in.

use std::fmt;
use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d)"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` does not start with a number"));
    }
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is out of range"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "`{text}` has unknown unit `{other}` (use ms, s, m, h or d)"
            ))
        }
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is out of range"))
}

/// A duration printed in the largest unit that represents it exactly.
pub struct Canonical(pub Duration);

impl fmt::Display for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        const UNITS: [(u128, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in UNITS {
            if millis >= size && millis.is_multiple_of(size) {
                return write!(f, "{}{unit}", millis / size);
            }
        }
        write!(f, "{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse("4").unwrap_err().contains("no unit"));
        assert!(parse("s").unwrap_err().contains("does not start"));
        assert!(parse("4 weeks").unwrap_err().contains("unknown unit"));
        assert!(parse("-4s").is_err());
        assert!(parse("99999999999999999999s")
            .unwrap_err()
            .contains("range"));
    }

    #[test]
    fn prints_in_the_largest_exact_unit() {
        let show = |ms| Canonical(Duration::from_millis(ms)).to_string();
        assert_eq!(show(4_000), "4s");
        assert_eq!(show(3_600_000), "1h");
        assert_eq!(show(90_000), "90s");
        assert_eq!(show(1_500), "1500ms");
        assert_eq!(show(0), "0ms");
    }
}
