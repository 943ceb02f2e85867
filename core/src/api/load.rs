//! Reading Forklane objects from (multi-document) YAML, with errors that name the field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Experiment, RolloutPolicy};

pub const API_VERSION: &str = "forklane.io/v1alpha1";

#[derive(Clone, Debug)]
pub enum Document {
    Experiment(Box<Experiment>),
    RolloutPolicy(Box<RolloutPolicy>),
}

/// A problem with one document: `document 2: spec.arms[0].selector: invalid type ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadError {
    /// 1-based position of the document in the file.
    pub document: usize,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "document {}: {}", self.document, self.message)
        } else {
            write!(f, "document {}: {}: {}", self.document, self.path, self.message)
        }
    }
}

/// Parses every document of `text`; empty documents are skipped.
pub fn load_documents(text: &str) -> Result<Vec<Document>, Vec<LoadError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (index, deserializer) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let error = |path: &str, message: String| LoadError { document: number, path: path.into(), message };
        let value = match Value::deserialize(deserializer) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                errors.push(error("", format!("not valid YAML: {e}")));
                // After a syntax error the stream cannot be resynchronised.
                break;
            }
        };
        match parse_document(&value) {
            Ok(doc) => documents.push(doc),
            Err(problems) => errors.extend(problems.into_iter().map(|(path, message)| error(&path, message))),
        }
    }
    if errors.is_empty() { Ok(documents) } else { Err(errors) }
}

type FieldProblems = Vec<(String, String)>;

fn parse_document(value: &Value) -> Result<Document, FieldProblems> {
    let Some(object) = value.as_object() else {
        return Err(vec![(
            String::new(),
            "not a Kubernetes object (expected a mapping with apiVersion and kind)".into(),
        )]);
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version != API_VERSION {
        return Err(vec![(
            "apiVersion".into(),
            format!("{api_version:?} (kind {kind:?}) is not a Forklane object; expected apiVersion {API_VERSION}"),
        )]);
    }
    match kind {
        "Experiment" => typed::<Experiment>(value).map(|e| Document::Experiment(Box::new(e))),
        "RolloutPolicy" => typed::<RolloutPolicy>(value).map(|p| Document::RolloutPolicy(Box::new(p))),
        other => Err(vec![(
            "kind".into(),
            format!("{other:?} is not a Forklane kind; expected Experiment or RolloutPolicy"),
        )]),
    }
}

/// Deserialises with the failing field's path, then rejects fields the type does not know,
/// as `kubectl apply` does with strict field validation.
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, FieldProblems> {
    let object: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![(path, e.into_inner().to_string())]
    })?;
    let round_trip = serde_json::to_value(&object).map_err(|e| vec![(String::new(), e.to_string())])?;
    let mut unknown = Vec::new();
    unknown_fields(value, &round_trip, String::new(), &mut unknown);
    if !unknown.is_empty() {
        return Err(unknown.into_iter().map(|path| (path, "unknown field".to_string())).collect());
    }
    Ok(object)
}

/// Fields present in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, round_trip: &Value, path: String, out: &mut Vec<String>) {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (input, round_trip) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                match kept.get(key) {
                    Some(kept_value) => unknown_fields(value, kept_value, join(key), out),
                    None if value.is_null() => {}
                    None => out.push(join(key)),
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (g, k)) in given.iter().zip(kept).enumerate() {
                unknown_fields(g, k, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "apiVersion: forklane.io/v1alpha1
kind: Experiment
metadata: {name: demo, namespace: shop}
spec:
  service: {name: my-app}
  arms:
    - {name: v1, control: true, selector: {version: v1}}
    - {name: v2, selector: {version: v2}}
  strategy: {blueGreen: {}}
";

    #[test]
    fn loads_an_experiment() {
        let docs = load_documents(MINIMAL).unwrap();
        assert!(matches!(&docs[..], [Document::Experiment(e)] if e.spec.arms.len() == 2));
    }

    #[test]
    fn names_the_unknown_field() {
        let text = MINIMAL.replace("blueGreen: {}", "blueGreen: {autoPromot: true}");
        let errors = load_documents(&text).unwrap_err();
        assert_eq!(errors[0].path, "spec.strategy.blueGreen.autoPromot");
    }

    #[test]
    fn names_the_field_of_a_type_error() {
        let text = MINIMAL.replace("{name: my-app}", "{name: my-app, port: eighty}");
        let errors = load_documents(&text).unwrap_err();
        assert_eq!(errors[0].path, "spec.service.port", "{errors:?}");
    }

    #[test]
    fn refuses_other_kinds() {
        let errors = load_documents("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n").unwrap_err();
        assert_eq!(errors[0].path, "apiVersion");
        assert!(errors[0].message.contains("Deployment"));
    }

    #[test]
    fn skips_empty_documents_and_counts_positions() {
        let text = format!("---\n{MINIMAL}---\nkind: Nope\n");
        let errors = load_documents(&text).unwrap_err();
        assert_eq!(errors[0].document, 2);
    }
}
