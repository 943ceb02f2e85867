//! Durations as Kubernetes and Prometheus users write them: `30s`, `5m`, `1h30m`, `24h`, `1d`.

use std::time::Duration;

/// Parses a duration made of one or more `<integer><unit>` parts, units `ms s m h d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (examples: 30s, 5m, 1h30m, 24h)");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let millis_per_unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let millis = value.checked_mul(millis_per_unit).ok_or_else(bad)?;
        total = total.checked_add(Duration::from_millis(millis)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a duration as a PromQL range (`90s`, `5m`, `1h2m3s`), the largest units first.
pub fn to_promql(duration: Duration) -> String {
    let mut secs = duration.as_secs().max(1);
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in ["", "5", "m", "5x", "1.5h", "-5m", "5m-"] {
            assert!(parse(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn formats_promql_ranges() {
        assert_eq!(to_promql(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(to_promql(Duration::from_secs(90)), "1m30s");
        assert_eq!(to_promql(Duration::ZERO), "1s");
    }
}
