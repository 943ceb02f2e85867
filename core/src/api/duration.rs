//! Durations as Kubernetes and Prometheus users write them: `30s`, `5m`, `1h30m`, `24h`, `1d`.
//! [`HumanDuration`] is the API's field type: the text is parsed once, when the object is read.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration field of the API. Reads and writes the text form (`1h30m`); a value that is not a
/// duration fails deserialisation, so the loader names the field and the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    pub(crate) const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        Self(duration)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse(text).map(Self)
    }
}

/// The canonical text: the largest units first, days written as hours (`24h`, `1h30m`, `250ms`).
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = millis;
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The same schema as a `String` field: the CRD keeps accepting exactly what it accepted.
impl JsonSchema for HumanDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        String::json_schema(generator)
    }
}

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
pub(crate) fn to_promql(duration: Duration) -> String {
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

    #[test]
    fn round_trips_through_json_in_canonical_form() {
        for (given, written) in
            [("30s", "30s"), ("1h30m", "1h30m"), ("90s", "1m30s"), ("1d", "24h"), ("1s500ms", "1s500ms")]
        {
            let d: HumanDuration = serde_json::from_value(serde_json::json!(given)).unwrap();
            assert_eq!(d.get(), parse(given).unwrap());
            assert_eq!(serde_json::to_value(d).unwrap(), serde_json::json!(written), "{given}");
            let again: HumanDuration = serde_json::from_value(serde_json::json!(written)).unwrap();
            assert_eq!(again, d);
        }
        assert_eq!(HumanDuration::default().to_string(), "0s");
    }

    #[test]
    fn a_bad_value_fails_deserialisation_with_the_value() {
        let err = serde_json::from_value::<HumanDuration>(serde_json::json!("5 minutes")).unwrap_err();
        assert_eq!(err.to_string(), "\"5 minutes\" is not a duration (examples: 30s, 5m, 1h30m, 24h)");
        assert!(serde_json::from_value::<HumanDuration>(serde_json::json!(300)).is_err(), "numbers are not durations");
    }
}
