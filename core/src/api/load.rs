//! Reading Forklane objects from (multi-document) YAML, with errors that name the field.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Experiment, RolloutPolicy};

pub(crate) const API_VERSION: &str = "forklane.io/v1alpha1";

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
///
/// Unknown fields are the ones serde skips while deserialising (`serde_ignored`): a field written
/// with its default value (`allowDegraded: false`, `rules: []`) is known, however it serialises.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, FieldProblems> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path| {
        let path = field_path(&path);
        // The root type has no fields for these two: `parse_document` checked them already.
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    };
    let object: T =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record)).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            vec![(path, e.into_inner().to_string())]
        })?;
    if !unknown.is_empty() {
        return Err(unknown.into_iter().map(|path| (path, "unknown field".to_string())).collect());
    }
    Ok(object)
}

/// A path as the other errors spell it: `spec.arms[1].selectr` (Options and newtypes are invisible).
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => field_path(parent),
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

    const AB_TEST: &str = "apiVersion: forklane.io/v1alpha1
kind: Experiment
metadata: {name: demo, namespace: shop}
spec:
  service: {name: my-app}
  arms:
    - {name: v1, control: true, selector: {version: v1}}
    - {name: v2, selector: {version: v2}}
  strategy:
    abTest:
      rules: [{name: beta, match: {headers: {x-group: {exact: beta}}}, arm: v2}]
      split: {v1: 50, v2: 50}
";

    const POLICY: &str = "apiVersion: forklane.io/v1alpha1
kind: RolloutPolicy
metadata: {name: prod}
spec:
  maxStepWeight: 20
  freezeWindows: [{schedule: '0 18 * * 5', duration: 60h}]
";

    /// `(base, from, to)`: the base document with one edit.
    fn edited(base: &str, from: &str, to: &str) -> String {
        assert!(base.contains(from), "{from:?} is not in the base document");
        base.replacen(from, to, 1)
    }

    #[test]
    fn accepts_fields_written_with_their_default_value() {
        let cases = [
            (AB_TEST, "rules: [{name: beta, match: {headers: {x-group: {exact: beta}}}, arm: v2}]", "rules: []"),
            (AB_TEST, "split: {v1: 50, v2: 50}", "split: {v1: 50, v2: 50}\n      allowDegraded: false"),
            (AB_TEST, "{exact: beta}}}", "{exact: beta}}, cookies: {}, regions: []}"),
            (AB_TEST, "{name: v2, selector", "{name: v2, control: false, selector"),
            (AB_TEST, "{name: demo, namespace: shop}", "{name: demo, namespace: shop, labels: {}}"),
            (AB_TEST, "  service: {name: my-app}", "  service: {name: my-app}\n  mirror: null\n  mesh: auto"),
            (MINIMAL, "blueGreen: {}", "blueGreen: {autoPromote: false}"),
            (MINIMAL, "blueGreen: {}", "canary: {steps: [{setWeight: 10}, {pause: {}}, {analysis: {}}]}"),
            (MINIMAL, "  strategy:", "  analysis: {metrics: [], srm: {enabled: false}}\n  strategy:"),
            (POLICY, "maxStepWeight: 20", "maxStepWeight: 20\n  allowedStrategies: []\n  requiredGuardrails: []"),
            (POLICY, "maxStepWeight: 20", "maxStepWeight: 20\n  requireManualPromotion: false"),
        ];
        for (base, from, to) in cases {
            let text = edited(base, from, to);
            assert!(load_documents(&text).is_ok(), "{to:?} refused: {:?}", load_documents(&text).unwrap_err());
        }
    }

    #[test]
    fn refuses_unknown_fields_with_their_path() {
        let cases = [
            (AB_TEST, "{name: v2, selector", "{name: v2, selectr: {}, selector", "spec.arms[1].selectr"),
            (
                AB_TEST,
                "split: {v1: 50, v2: 50}",
                "split: {v1: 50, v2: 50}\n      rule: []",
                "spec.strategy.abTest.rule",
            ),
            (AB_TEST, "{headers:", "{header: {}, headers:", "spec.strategy.abTest.rules[0].match.header"),
            (
                AB_TEST,
                "{exact: beta}",
                "{exact: beta, exactly: beta}",
                "spec.strategy.abTest.rules[0].match.headers.x-group.exactly",
            ),
            (AB_TEST, "namespace: shop}", "namespace: shop, nam: x}", "metadata.nam"),
            (
                AB_TEST,
                "  service: {name: my-app}",
                "  service: {name: my-app}\n  mirror: {arm: v2, percent: 5, precent: 5}",
                "spec.mirror.precent",
            ),
            (AB_TEST, "spec:", "spce: {}\nspec:", "spce"),
            (MINIMAL, "blueGreen: {}", "blueGreen: {}, blueGreenX: null", "spec.strategy.blueGreenX"),
            (
                MINIMAL,
                "blueGreen: {}",
                "canary: {steps: [{pause: {duraton: 5m}}]}",
                "spec.strategy.canary.steps[0].pause.duraton",
            ),
            (POLICY, "maxStepWeight: 20", "maxStepWeigth: 20", "spec.maxStepWeigth"),
            (POLICY, "duration: 60h}", "duration: 60h, reasn: x}", "spec.freezeWindows[0].reasn"),
        ];
        for (base, from, to, path) in cases {
            let errors = load_documents(&edited(base, from, to)).unwrap_err();
            let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
            assert_eq!(found.len(), 1, "{to:?}: {found:?}");
            // An unknown strategy key also lists the five strategies.
            assert_eq!(found[0].0, path, "{to:?}");
            assert!(found[0].1.starts_with("unknown field"), "{to:?}: {}", found[0].1);
        }
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
