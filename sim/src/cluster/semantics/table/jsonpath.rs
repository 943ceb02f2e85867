//! The JSONPath subset printer columns use: `.a.b`, `[n]`, `[*]`, `['key']` and
//! `[?(@.field=="value")]` filters.

use serde_json::Value;

enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, Value),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = f.split_once("==")?;
                let value = serde_json::from_str(&rhs.trim().replace('\'', "\"")).ok()?;
                Step::Filter(lhs.trim().split('.').map(str::to_string).collect(), value)
            } else if let Ok(i) = inner.parse() {
                Step::Index(i)
            } else {
                Step::Field(inner.trim_matches(['\'', '"']).to_string())
            });
        } else {
            return None;
        }
    }
    Some(steps)
}

/// All values the path selects in `obj` (none for an unparsable path).
pub(crate) fn find<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else { return Vec::new() };
    let mut cur = vec![obj];
    for step in &steps {
        cur = cur
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match step {
                    Step::Field(f) => v.get(f).into_iter().collect(),
                    Step::Index(i) => v.get(*i).into_iter().collect(),
                    Step::All => v.as_array().map(|a| a.iter().collect()).unwrap_or_default(),
                    Step::Filter(field, want) => v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|item| field.iter().try_fold(*item, |x, f| x.get(f)) == Some(want))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::find;
    use serde_json::json;

    #[test]
    fn selects_fields_indexes_and_filters() {
        let o = json!({"spec": {"arms": [{"name": "a"}, {"name": "b"}]}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Done", "status": "False"}]}});
        assert_eq!(find(&o, ".spec.arms[1].name"), [&json!("b")]);
        assert_eq!(find(&o, ".spec.arms[*].name"), [&json!("a"), &json!("b")]);
        assert_eq!(find(&o, r#".status.conditions[?(@.type=="Ready")].status"#), [&json!("True")]);
        assert_eq!(find(&o, ".status.conditions[?(@.type=='Done')].status"), [&json!("False")]);
        assert!(find(&o, ".spec.missing").is_empty());
    }
}
