//! YAML bodies decoded into JSON values with a bound on what alias expansion may build.
//!
//! The YAML parser expands every alias (`*a`) into a copy of its anchored node, so a few
//! kilobytes of nested aliases (a "billion laughs" document) decode into gigabytes. Like
//! kube-apiserver (go-yaml's "document contains excessive aliasing"), the decoder refuses such
//! a document; it does so while building, before the expansion is held in memory. The budget
//! is what the most expensive alias-free body of the same length could build, plus a fixed
//! allowance for honest anchors: no alias-free document is ever refused.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// What one node costs on top of its string bytes: a `Value` inside its parent.
const NODE_COST: usize = std::mem::size_of::<Value>();
/// Alias expansion allowed beyond the worst alias-free document, in estimated bytes.
const ALIAS_ALLOWANCE: usize = 8 * 1024 * 1024;

/// The message kube-apiserver answers an alias bomb with.
pub(crate) const EXCESSIVE_ALIASING: &str = "document contains excessive aliasing";

/// Decodes one YAML document, refusing one whose expansion exceeds the budget for its length.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, serde_yaml_ng::Error> {
    // An alias-free document has at most one node per two bytes (`[a,a,...]`) and no more
    // string bytes than it has bytes.
    let worst_alias_free = bytes.len() / 2 * NODE_COST + bytes.len();
    let budget = Budget { left: Cell::new(worst_alias_free + ALIAS_ALLOWANCE) };
    BoundedValue(&budget).deserialize(serde_yaml_ng::Deserializer::from_slice(bytes)).map_err(|e| {
        // serde_yaml_ng's own bound (100 alias jumps per parsed event) refuses deep alias
        // chains before the budget does; it is the same refusal.
        if e.to_string().starts_with("repetition limit exceeded") { de::Error::custom(EXCESSIVE_ALIASING) } else { e }
    })
}

struct Budget {
    left: Cell<usize>,
}

impl Budget {
    fn spend<E: de::Error>(&self, string_bytes: usize) -> Result<(), E> {
        let cost = NODE_COST + string_bytes;
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(E::custom(EXCESSIVE_ALIASING)),
        }
    }
}

/// A `serde_json::Value` built node by node against the budget.
#[derive(Clone, Copy)]
struct BoundedValue<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A mapping key, read as a string as `serde_json::Value` reads keys.
struct BoundedKey<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for BoundedKey<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        let key = String::deserialize(deserializer)?;
        self.0.spend(key.len())?;
        Ok(key)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.spend(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.0.spend(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(0)?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(BoundedKey(self.0))? {
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` levels of ten aliases to the level below: 10^levels copies of "lol".
    fn deep_bomb(levels: usize) -> String {
        let mut doc = "a0: &a0 lol\n".to_string();
        for level in 1..=levels {
            let refs = vec![format!("*a{}", level - 1); 10].join(",");
            doc.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        doc
    }

    /// Few alias jumps per parsed node (under serde_yaml_ng's own bound), each copying a
    /// 4 KB string: 10 KB that would expand to about 400 MB.
    fn wide_bomb() -> String {
        let s = format!("s: &s {}\n", "x".repeat(4096));
        let a1 = format!("a1: &a1 [{}]\n", ["*s"; 9].join(","));
        let a2 = format!("a2: &a2 [{}]\n", ["*a1"; 9].join(","));
        let top = format!("top: [{}]\n", ["*a2"; 1200].join(","));
        s + &a1 + &a2 + &top
    }

    #[test]
    fn alias_bombs_are_refused_before_they_are_expanded() {
        for doc in [deep_bomb(9), wide_bomb()] {
            assert!(doc.len() <= 10 * 1024);
            let err = from_slice(doc.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(EXCESSIVE_ALIASING), "{err}");
        }
    }

    #[test]
    fn long_strings_behind_aliases_count_by_their_bytes() {
        let doc =
            format!("s: &s {}\nl: &l [{}]\nm: [{}]\n", "x".repeat(100_000), ["*s"; 10].join(","), ["*l"; 10].join(","));
        let err = from_slice(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(EXCESSIVE_ALIASING), "{err}");
    }

    #[test]
    fn modest_anchors_and_alias_free_documents_decode_as_before() {
        let doc = "base: &b {app: web, tier: [a, b]}\nx: *b\ny: *b\nn: 1\nf: 1.5\nt: true\nz: ~\n1: one\n";
        let plain: Value = serde_yaml_ng::from_str(doc).unwrap();
        assert_eq!(from_slice(doc.as_bytes()).unwrap(), plain);
        // The densest alias-free document: one node per two bytes.
        let dense = format!("[{}0]", "0,".repeat(1_000_000));
        assert_eq!(from_slice(dense.as_bytes()).unwrap().as_array().unwrap().len(), 1_000_001);
        let anchors = deep_bomb(3);
        assert_eq!(from_slice(anchors.as_bytes()).unwrap(), serde_yaml_ng::from_str::<Value>(&anchors).unwrap());
    }
}
