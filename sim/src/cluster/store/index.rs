//! The label index of one resource: for each label key and value, the keys of the objects
//! carrying it, maintained on every commit. A list whose label selector has an `=` or `in`
//! requirement visits only the objects carrying one of the required values instead of the
//! whole table, so its cost follows the matches (per-namespace lists already read a key range
//! of the table, which is ordered by namespace first).

use super::ObjKey;
use crate::cluster::selectors::LabelSelector;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

#[derive(Default)]
pub(crate) struct LabelIndex(HashMap<String, HashMap<String, BTreeSet<ObjKey>>>);

impl LabelIndex {
    /// Moves `key` from the labels of `before` to those of `after` (either absent for a
    /// create or a delete).
    pub(crate) fn update(&mut self, key: &ObjKey, before: Option<&Value>, after: Option<&Value>) {
        let (old, new) = (labels(before), labels(after));
        for (k, v) in &old {
            if new.get(k) == Some(v) {
                continue;
            }
            if let Some(values) = self.0.get_mut(*k)
                && let Some(keys) = values.get_mut(*v)
            {
                keys.remove(key);
                if keys.is_empty() {
                    values.remove(*v);
                    if values.is_empty() {
                        self.0.remove(*k);
                    }
                }
            }
        }
        for (k, v) in &new {
            if old.get(k) != Some(v) {
                self.0.entry(k.to_string()).or_default().entry(v.to_string()).or_default().insert(key.clone());
            }
        }
    }

    /// The keys, in table order, of the objects that may match `selector`: those carrying a
    /// required value of its most selective `=`/`in` requirement. None when the selector has
    /// no such requirement (the whole table must be scanned).
    pub(crate) fn candidates(&self, selector: &LabelSelector) -> Option<Vec<&ObjKey>> {
        let sets = selector.required_values().map(|(k, values)| {
            let by_value = self.0.get(k);
            values.iter().filter_map(|v| by_value?.get(v)).collect::<Vec<_>>()
        });
        let smallest = sets.min_by_key(|sets| sets.iter().map(|s| s.len()).sum::<usize>())?;
        let mut keys: Vec<&ObjKey> = smallest.into_iter().flatten().collect();
        keys.sort_unstable();
        // An object carries one value per key, but `in (a, a)` names a value twice.
        keys.dedup();
        Some(keys)
    }
}

/// The string-valued labels of an object (the only ones a selector can match).
fn labels(obj: Option<&Value>) -> HashMap<&str, &str> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// One write to a small keyspace: set an object's labels (create or relabel), or delete it.
    #[derive(Debug, Clone)]
    enum Op {
        Put { ns: u8, name: u8, labels: Vec<(u8, u8)> },
        Delete { ns: u8, name: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..2u8, 0..8u8, prop::collection::vec((0..3u8, 0..3u8), 0..3))
                .prop_map(|(ns, name, labels)| Op::Put { ns, name, labels }),
            1 => (0..2u8, 0..8u8).prop_map(|(ns, name)| Op::Delete { ns, name }),
        ]
    }

    fn selector() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..3u8, 0..4u8).prop_map(|(k, v)| format!("k{k}=v{v}")),
            (0..3u8, 0..4u8, 0..4u8).prop_map(|(k, a, b)| format!("k{k} in (v{a},v{b})")),
            (0..3u8, 0..3u8, 0..3u8).prop_map(|(k, v, j)| format!("k{k}=v{v},k{j}")),
            (0..3u8, 0..3u8).prop_map(|(k, j)| format!("k{k},!k{j}")),
        ]
    }

    fn object(ns: u8, name: u8, labels: &[(u8, u8)]) -> Value {
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| (format!("k{k}"), json!(format!("v{v}")))).collect();
        json!({"metadata": {"namespace": format!("ns{ns}"), "name": format!("o{name}"), "labels": labels}})
    }

    #[test]
    fn a_value_named_twice_gives_its_objects_once() {
        let mut index = LabelIndex::default();
        let key = ("ns0".to_string(), "o0".to_string());
        index.update(&key, None, Some(&object(0, 0, &[(2, 1)])));
        let selector = LabelSelector::parse("k2 in (v1,v1)").unwrap();
        assert_eq!(index.candidates(&selector), Some(vec![&key]));
    }

    proptest! {
        /// After any creates, relabels and deletes, the candidates of a selector are the objects
        /// carrying a value of its most selective requirement, in key order, and filtering them
        /// gives what a full scan finds.
        #[test]
        fn the_index_agrees_with_a_full_scan(ops in prop::collection::vec(op(), 0..40), sel in selector()) {
            let mut index = LabelIndex::default();
            let mut table: BTreeMap<ObjKey, Value> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put { ns, name, labels } => {
                        let key = (format!("ns{ns}"), format!("o{name}"));
                        let obj = object(ns, name, &labels);
                        index.update(&key, table.get(&key), Some(&obj));
                        table.insert(key, obj);
                    }
                    Op::Delete { ns, name } => {
                        let key = (format!("ns{ns}"), format!("o{name}"));
                        if let Some(old) = table.remove(&key) {
                            index.update(&key, Some(&old), None);
                        }
                    }
                }
            }
            let selector = LabelSelector::parse(&sel).unwrap();
            let scan: Vec<&ObjKey> = table.iter().filter(|(_, o)| selector.matches(o)).map(|(k, _)| k).collect();
            match index.candidates(&selector) {
                Some(candidates) => {
                    prop_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
                    let filtered: Vec<&ObjKey> =
                        candidates.iter().copied().filter(|k| selector.matches(&table[*k])).collect();
                    prop_assert_eq!(&filtered, &scan);
                    // Exactly the objects carrying a value of the most selective requirement.
                    let carrying: Vec<Vec<&ObjKey>> = selector
                        .required_values()
                        .map(|(key, values)| {
                            table
                                .iter()
                                .filter(|(_, o)| o["metadata"]["labels"][key].as_str().is_some_and(|v| values.iter().any(|x| x == v)))
                                .map(|(k, _)| k)
                                .collect()
                        })
                        .collect();
                    prop_assert!(carrying.contains(&candidates), "{candidates:?} in {carrying:?}");
                    prop_assert_eq!(candidates.len(), carrying.iter().map(Vec::len).min().unwrap());
                }
                None => prop_assert!(selector.required_values().next().is_none()),
            }
            // Nothing is left behind for objects that are gone.
            if table.is_empty() {
                prop_assert!(index.0.is_empty());
            }
        }
    }
}
