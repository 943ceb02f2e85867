//! `spec.strategy`: exactly one of five strategies, as one enum. On the wire it is a mapping with
//! one key (`strategy: {canary: {...}}`); reading refuses none, two, or an unknown key, naming
//! `spec.strategy`, so nothing after loading has to prove again which strategy is set.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::experiment::{AbTest, BlueGreen, Canary, Recreate, RollingUpdate};

/// How traffic moves between the arms.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    Recreate(Recreate),
    RollingUpdate(RollingUpdate),
    BlueGreen(BlueGreen),
    Canary(Canary),
    AbTest(AbTest),
}

/// The strategy names, as they appear in `spec.strategy` and in policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StrategyName {
    Recreate,
    RollingUpdate,
    BlueGreen,
    Canary,
    AbTest,
}

const EXACTLY_ONE: &str = "exactly one strategy must be set: recreate, rollingUpdate, blueGreen, canary or abTest";

impl StrategyName {
    pub(crate) const ALL: [StrategyName; 5] =
        [Self::Recreate, Self::RollingUpdate, Self::BlueGreen, Self::Canary, Self::AbTest];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recreate => "recreate",
            Self::RollingUpdate => "rollingUpdate",
            Self::BlueGreen => "blueGreen",
            Self::Canary => "canary",
            Self::AbTest => "abTest",
        }
    }
}

impl Strategy {
    pub(crate) fn name(&self) -> StrategyName {
        match self {
            Strategy::Recreate(_) => StrategyName::Recreate,
            Strategy::RollingUpdate(_) => StrategyName::RollingUpdate,
            Strategy::BlueGreen(_) => StrategyName::BlueGreen,
            Strategy::Canary(_) => StrategyName::Canary,
            Strategy::AbTest(_) => StrategyName::AbTest,
        }
    }

    /// The A/B test, when that is the strategy.
    pub fn ab_test(&self) -> Option<&AbTest> {
        if let Strategy::AbTest(ab) = self { Some(ab) } else { None }
    }
}

/// A one-key mapping, the way every reader expects it (a derived enum would be a YAML tag,
/// `!canary`, in serde_yaml_ng's output).
impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        let key = self.name().as_str();
        match self {
            Strategy::Recreate(s) => map.serialize_entry(key, s)?,
            Strategy::RollingUpdate(s) => map.serialize_entry(key, s)?,
            Strategy::BlueGreen(s) => map.serialize_entry(key, s)?,
            Strategy::Canary(s) => map.serialize_entry(key, s)?,
            Strategy::AbTest(s) => map.serialize_entry(key, s)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OneStrategy)
    }
}

struct OneStrategy;

impl<'de> Visitor<'de> for OneStrategy {
    type Value = Strategy;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with one of recreate, rollingUpdate, blueGreen, canary, abTest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strategy, A::Error> {
        let mut set = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(name) = StrategyName::ALL.into_iter().find(|n| n.as_str() == key) else {
                // Refused as the key's value, so the error's path ends in the key.
                match map.next_value_seed(UnknownKey)? {}
            };
            // `canary: null` is an absent key, as for every other optional field.
            let strategy = match name {
                StrategyName::Recreate => map.next_value::<Option<_>>()?.map(Strategy::Recreate),
                StrategyName::RollingUpdate => map.next_value::<Option<_>>()?.map(Strategy::RollingUpdate),
                StrategyName::BlueGreen => map.next_value::<Option<_>>()?.map(Strategy::BlueGreen),
                StrategyName::Canary => map.next_value::<Option<_>>()?.map(Strategy::Canary),
                StrategyName::AbTest => map.next_value::<Option<_>>()?.map(Strategy::AbTest),
            };
            set.extend(strategy);
        }
        if set.len() == 1 {
            return Ok(set.remove(0));
        }
        let mut names: Vec<StrategyName> = set.iter().map(Strategy::name).collect();
        names.sort();
        let found = if names.is_empty() {
            "none".to_string()
        } else {
            names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
        };
        Err(A::Error::custom(format!("{EXACTLY_ONE} (found: {found})")))
    }
}

/// The value of a key that names no strategy: always an error.
struct UnknownKey;

impl<'de> DeserializeSeed<'de> for UnknownKey {
    type Value = std::convert::Infallible;

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<Self::Value, D::Error> {
        Err(D::Error::custom("unknown field (strategies: recreate, rollingUpdate, blueGreen, canary, abTest)"))
    }
}

/// The schema the CRD has always had: an object with the five optional strategies and a CEL
/// rule that exactly one is set (the API server then refuses what deserialisation refuses).
impl JsonSchema for Strategy {
    fn schema_name() -> Cow<'static, str> {
        "Strategy".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let properties = serde_json::Map::from_iter([
            ("recreate".to_string(), generator.subschema_for::<Option<Recreate>>().to_value()),
            ("rollingUpdate".to_string(), generator.subschema_for::<Option<RollingUpdate>>().to_value()),
            ("blueGreen".to_string(), generator.subschema_for::<Option<BlueGreen>>().to_value()),
            ("canary".to_string(), generator.subschema_for::<Option<Canary>>().to_value()),
            ("abTest".to_string(), generator.subschema_for::<Option<AbTest>>().to_value()),
        ]);
        let rule = "[has(self.recreate), has(self.rollingUpdate), has(self.blueGreen), has(self.canary), has(self.abTest)].filter(x, x).size() == 1";
        json_schema!({
            "description": "Exactly one of the five strategies.",
            "type": "object",
            "properties": properties,
            "x-kubernetes-validations": [{"rule": rule, "message": EXACTLY_ONE}],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: serde_json::Value) -> Result<Strategy, String> {
        serde_path_to_error::deserialize(&value).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn reads_and_writes_one_strategy_under_its_key() {
        let s = read(json!({"blueGreen": {"autoPromote": true}})).unwrap();
        assert_eq!(s, Strategy::BlueGreen(BlueGreen { auto_promote: true, ..Default::default() }));
        assert_eq!(s.name(), StrategyName::BlueGreen);
        assert_eq!(serde_json::to_value(&s).unwrap(), json!({"blueGreen": {"autoPromote": true}}));
        // YAML too: a mapping with one key, not a YAML tag (`!blueGreen`), which no reader expects.
        assert_eq!(serde_yaml_ng::to_string(&s).unwrap(), "blueGreen:\n  autoPromote: true\n");
    }

    #[test]
    fn refuses_no_strategy_and_two_strategies() {
        assert_eq!(read(json!({})).unwrap_err(), format!(".: {EXACTLY_ONE} (found: none)"));
        assert_eq!(read(json!({"canary": null})).unwrap_err(), format!(".: {EXACTLY_ONE} (found: none)"));
        let two = read(json!({"abTest": {"split": {"v1": 100}}, "canary": {"steps": []}})).unwrap_err();
        assert_eq!(two, format!(".: {EXACTLY_ONE} (found: canary, abTest)"));
    }

    #[test]
    fn names_an_unknown_key_and_the_field_of_a_nested_error() {
        assert!(read(json!({"blueGren": {}})).unwrap_err().starts_with("blueGren: unknown field"));
        let nested = read(json!({"canary": {"steps": [{"setWeight": "ten"}]}})).unwrap_err();
        assert!(nested.starts_with("canary.steps[0].setWeight: invalid type"), "{nested}");
    }
}
