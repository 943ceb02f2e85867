use super::*;
use serde_json::json;

fn messages(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<String> {
    let mut m: Vec<String> = validate(schema, obj, old).iter().map(FieldError::message_text).collect();
    m.sort();
    m
}

fn field(schema: Value) -> Value {
    json!({"type": "object", "properties": {"field": schema}})
}

// Expectations below are the apiextensions-apiserver's own test expectations
// (TestValidateCustomResource) or real apiserver output.

#[test]
fn type_errors_name_the_json_type() {
    let s = field(json!({"type": "object"}));
    assert_eq!(
        messages(&s, &json!({"field": "foo"}), None),
        [r#"field: Invalid value: "string": field in body must be of type object: "string""#]
    );
    assert_eq!(
        messages(&s, &json!({"field": 42}), None),
        [r#"field: Invalid value: "integer": field in body must be of type object: "integer""#]
    );
    assert_eq!(
        messages(&s, &json!({"field": 1.2}), None),
        [r#"field: Invalid value: "number": field in body must be of type object: "number""#]
    );
    assert_eq!(
        messages(&s, &json!({"field": null}), None),
        [r#"field: Invalid value: "null": field in body must be of type object: "null""#]
    );
    let nullable = field(json!({"type": "object", "nullable": true}));
    assert!(messages(&nullable, &json!({"field": null}), None).is_empty());
}

#[test]
fn integral_numbers_are_integers_and_integers_are_numbers() {
    assert!(messages(&field(json!({"type": "integer"})), &json!({"field": 3.0}), None).is_empty());
    assert!(messages(&field(json!({"type": "number"})), &json!({"field": 3}), None).is_empty());
    assert_eq!(
        messages(
            &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}),
            &json!({"spec": {"replicas": "x"}}),
            None
        ),
        [r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#]
    );
}

#[test]
fn int_or_string() {
    let s = field(json!({"x-kubernetes-int-or-string": true}));
    assert!(messages(&s, &json!({"field": 42}), None).is_empty());
    assert!(messages(&s, &json!({"field": "50%"}), None).is_empty());
    assert_eq!(
        messages(&s, &json!({"field": true}), None),
        [r#"field: Invalid value: "boolean": field in body must be of type integer,string: "boolean""#]
    );
    let with_any_of = field(
        json!({"x-kubernetes-int-or-string": true, "nullable": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
    );
    assert!(messages(&with_any_of, &json!({"field": null}), None).is_empty());
    assert_eq!(
        messages(&with_any_of, &json!({"field": []}), None),
        [
            r#"<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)"#,
            r#"field: Invalid value: "array": field in body must be of type integer,string: "array""#,
            r#"field: Invalid value: "array": field in body must be of type integer: "array""#,
        ]
    );
}

#[test]
fn all_of_reports_none_validated() {
    let s = field(
        json!({"x-kubernetes-int-or-string": true, "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}]}),
    );
    assert_eq!(
        messages(&s, &json!({"field": 1.2}), None),
        [
            r#"<nil>: Invalid value: "": "field" must validate all the schemas (allOf). None validated"#,
            r#"<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)"#,
            r#"field: Invalid value: "number": field in body must be of type integer,string: "number""#,
            r#"field: Invalid value: "number": field in body must be of type integer: "number""#,
        ]
    );
}

#[test]
fn one_of_and_not_as_istio_uses_them() {
    // Istio's "exactly one of exact/prefix" pattern.
    let s = field(json!({"type": "object", "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}},
        "oneOf": [{"not": {"anyOf": [{"required": ["exact"]}, {"required": ["prefix"]}]}}, {"required": ["exact"]}, {"required": ["prefix"]}]}));
    assert!(messages(&s, &json!({"field": {"exact": "a"}}), None).is_empty());
    assert!(messages(&s, &json!({"field": {}}), None).is_empty());
    assert_eq!(
        messages(&s, &json!({"field": {"exact": "a", "prefix": "b"}}), None),
        [
            r#"<nil>: Invalid value: "": "field" must not validate the schema (not)"#,
            r#"<nil>: Invalid value: "": "field" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        ]
    );
}

#[test]
fn required_and_enum() {
    let s = field(json!({"type": "object", "required": ["nestedint", "nestedstring"], "properties": {
        "nestedint": {"type": "integer", "enum": [1, 2]}, "nestedstring": {"type": "string", "enum": ["a", "b"]}}}));
    assert_eq!(
        messages(&s, &json!({"field": {}}), None),
        ["field.nestedint: Required value", "field.nestedstring: Required value"]
    );
    assert_eq!(
        messages(&s, &json!({"field": {"nestedint": "x", "nestedstring": true}}), None),
        [
            r#"field.nestedint: Invalid value: "string": field.nestedint in body must be of type integer: "string""#,
            r#"field.nestedint: Unsupported value: "x": supported values: "1", "2""#,
            r#"field.nestedstring: Invalid value: "boolean": field.nestedstring in body must be of type string: "boolean""#,
            r#"field.nestedstring: Unsupported value: true: supported values: "a", "b""#,
        ]
    );
}

#[test]
fn numeric_bounds() {
    let s = field(json!({"type": "integer", "minimum": 0, "maximum": 3}));
    assert_eq!(
        messages(&s, &json!({"field": -1}), None),
        ["field: Invalid value: -1: field in body should be greater than or equal to 0"]
    );
    assert_eq!(
        messages(&s, &json!({"field": 4}), None),
        ["field: Invalid value: 4: field in body should be less than or equal to 3"]
    );
    let ex = field(
        json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true}),
    );
    assert_eq!(
        messages(&ex, &json!({"field": 0}), None),
        ["field: Invalid value: 0: field in body should be greater than 0"]
    );
    assert_eq!(
        messages(&ex, &json!({"field": 1.0}), None),
        ["field: Invalid value: 1: field in body should be less than 1"]
    );
    assert!(messages(&ex, &json!({"field": 0.5}), None).is_empty());
    assert_eq!(
        messages(&field(json!({"type": "integer", "multipleOf": 5})), &json!({"field": 7}), None),
        ["field: Invalid value: 7: field in body should be a multiple of 5"]
    );
}

#[test]
fn string_constraints() {
    assert_eq!(
        messages(&field(json!({"type": "string", "maxLength": 2})), &json!({"field": "abc"}), None),
        ["field: Too long: may not be more than 2 bytes"]
    );
    // Runes are counted, not bytes.
    assert!(messages(&field(json!({"type": "string", "maxLength": 2})), &json!({"field": "éé"}), None).is_empty());
    assert_eq!(
        messages(&field(json!({"type": "string", "minLength": 3})), &json!({"field": "ab"}), None),
        [r#"field: Invalid value: "ab": field in body should be at least 3 chars long"#]
    );
    assert_eq!(
        messages(&field(json!({"type": "string", "pattern": "^[a-z]+$"})), &json!({"field": "Ab"}), None),
        [r#"field: Invalid value: "Ab": field in body should match '^[a-z]+$'"#]
    );
    assert_eq!(
        messages(&field(json!({"type": "string", "format": "date-time"})), &json!({"field": "yesterday"}), None),
        [r#"field: Invalid value: "yesterday": field in body must be of type date-time: "yesterday""#]
    );
}

#[test]
fn array_and_object_sizes() {
    assert_eq!(
        messages(&field(json!({"type": "array", "maxItems": 2})), &json!({"field": ["a", "b", "c"]}), None),
        ["field: Too many: 3: must have at most 2 items"]
    );
    assert_eq!(
        messages(&field(json!({"type": "array", "minItems": 2})), &json!({"field": ["a"]}), None),
        ["field: Invalid value: 1: field in body should have at least 2 items"]
    );
    assert_eq!(
        messages(
            &field(json!({"type": "object", "maxProperties": 2})),
            &json!({"field": {"a": 1, "b": 2, "c": 3}}),
            None
        ),
        ["field: Too many: 3: must have at most 2 items"]
    );
    assert_eq!(
        messages(&field(json!({"type": "array", "uniqueItems": true})), &json!({"field": [1, 1]}), None),
        [r#"field: Invalid value: "": field in body shouldn't contain duplicates"#]
    );
}

#[test]
fn items_and_additional_properties_paths() {
    let s = field(json!({"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}));
    assert_eq!(
        messages(&s, &json!({"field": [{"name": "a"}, {"name": 1}]}), None),
        [r#"field[1].name: Invalid value: "integer": field[1].name in body must be of type string: "integer""#]
    );
    let m = field(json!({"type": "object", "additionalProperties": {"type": "integer"}}));
    assert_eq!(
        messages(&m, &json!({"field": {"a": 1, "b": "x"}}), None),
        [r#"field.b: Invalid value: "string": field.b in body must be of type integer: "string""#]
    );
}

#[test]
fn list_type_duplicates() {
    let set = field(json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}));
    assert_eq!(messages(&set, &json!({"field": ["a", "b", "a"]}), None), [r#"field[2]: Duplicate value: "a""#]);
    let map = field(json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "integer"}}}}));
    assert_eq!(
        messages(&map, &json!({"field": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}]}), None),
        [r#"field[1]: Duplicate value: map[string]interface {}{"name":"a"}"#]
    );
}

#[test]
fn embedded_resources_need_api_version_and_kind() {
    let s = field(
        json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}),
    );
    assert_eq!(
        messages(&s, &json!({"field": {"kind": ""}}), None),
        ["field.apiVersion: Required value: must not be empty", r#"field.kind: Invalid value: "": must not be empty"#]
    );
}

fn cel_schema() -> Value {
    json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
            {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable", "fieldPath": ".mode"},
            {"rule": "!has(self.forbidden)", "reason": "FieldValueForbidden", "message": "must not be set", "fieldPath": ".forbidden"},
        ],
        "properties": {
            "minReplicas": {"type": "integer"},
            "maxReplicas": {"type": "integer"},
            "mode": {"type": "string"},
            "forbidden": {"type": "string"},
            "arms": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}, {"rule": "self.size() > 1"}]}}}},
        }
    }}})
}

#[test]
fn cel_rules_report_node_type_and_message() {
    let obj =
        json!({"spec": {"minReplicas": 3, "maxReplicas": 1, "mode": "a", "forbidden": "x", "arms": [{"name": "b"}]}});
    assert_eq!(
        messages(&cel_schema(), &obj, None),
        [
            r#"spec.arms[0].name: Invalid value: "string": failed rule: self.size() > 1"#,
            "spec.forbidden: Forbidden: must not be set",
            r#"spec: Invalid value: "object": minReplicas must not exceed maxReplicas"#,
        ]
    );
}

#[test]
fn cel_transition_rules_need_a_correlated_old_value() {
    let old = json!({"spec": {"minReplicas": 1, "maxReplicas": 1, "mode": "a", "arms": [{"name": "bb"}]}});
    let new = json!({"spec": {"minReplicas": 1, "maxReplicas": 2, "mode": "b", "arms": [{"name": "cc"}]}});
    // The item of an atomic list is not correlated, so `self == oldSelf` on arms[].name is skipped.
    assert_eq!(messages(&cel_schema(), &new, Some(&old)), [r#"spec.mode: Invalid value: "object": mode is immutable"#]);
}

#[test]
fn cel_rules_are_skipped_after_blocking_errors() {
    let obj = json!({"spec": {"minReplicas": "x", "maxReplicas": 1, "mode": "a"}});
    let m = messages(&cel_schema(), &obj, None);
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        m[0],
        r#"<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#
    );
}

#[test]
fn cel_evaluation_errors_are_reported_not_accepted() {
    let s = field(json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.missing == 1"}]}));
    let m = messages(&s, &json!({"field": {}}), None);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].starts_with(r#"field: Invalid value: "object": "#) && m[0].ends_with("evaluating rule: self.missing == 1"),
        "{m:?}"
    );
}

#[test]
fn uncompilable_rules_are_listed() {
    assert!(check_rules(&cel_schema()).is_empty());
    assert_eq!(
        check_rules(&field(json!({"type": "string", "x-kubernetes-validations": [{"rule": "self ==="}]}))).len(),
        1
    );
}

#[test]
fn ratcheting_ignores_unchanged_invalid_values() {
    let s = json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 1}, "b": {"type": "string", "maxLength": 1}}});
    let old = json!({"a": "long", "b": "x"});
    assert!(messages(&s, &json!({"a": "long", "b": "y"}), Some(&old)).is_empty());
    assert_eq!(
        messages(&s, &json!({"a": "longer", "b": "y"}), Some(&old)),
        ["a: Too long: may not be more than 1 byte"]
    );
}

#[test]
fn prune_drops_unknown_fields_and_reports_paths() {
    let s = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "arms": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"typed": {"type": "object", "properties": {}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
            "opt": {"type": "string"},
        }},
    }});
    let mut obj = json!({
        "apiVersion": "forklane.io/v1", "kind": "Experiment",
        "metadata": {"name": "x", "bogus": 1, "creationTimestamp": null},
        "spec": {"arms": [{"name": "a", "extra": 1}], "free": {"anything": 1, "typed": {"gone": 1}},
                 "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}, "nope": 1}, "status": {}},
                 "opt": null, "unknown": true},
        "status": {},
    });
    let dropped = prune(&s, &mut obj);
    assert_eq!(
        dropped,
        [
            "metadata.bogus",
            "spec.arms[0].extra",
            "spec.free.typed.gone",
            "spec.template.metadata.nope",
            "spec.template.status",
            "spec.unknown",
            "status"
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "forklane.io/v1", "kind": "Experiment", "metadata": {"name": "x"},
            "spec": {"arms": [{"name": "a"}], "free": {"anything": 1, "typed": {}},
                     "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}}}},
        })
    );
    assert_eq!(unknown_field_message("spec.unknown"), r#"unknown field "spec.unknown""#);
}

#[test]
fn defaults_fill_missing_and_non_nullable_null_fields_top_down() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
        "mesh": {"type": "string", "default": "auto"},
        "arms": {"type": "array", "items": {"type": "object", "properties": {"weight": {"type": "integer", "default": 1}}}},
        "keep": {"type": "string", "nullable": true, "default": "d"},
    }}}});
    let mut obj = json!({});
    apply_defaults(&s, &mut obj);
    assert_eq!(obj, json!({"spec": {"mesh": "auto", "keep": "d"}}));
    let mut obj = json!({"spec": {"mesh": null, "keep": null, "arms": [{}, {"weight": 5}]}});
    apply_defaults(&s, &mut obj);
    assert_eq!(obj, json!({"spec": {"mesh": "auto", "keep": null, "arms": [{"weight": 1}, {"weight": 5}]}}));
}

#[test]
fn list_type_lookup_for_apply() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "arms": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
        "plain": {"type": "array", "items": {"type": "string"}},
    }}}});
    use crate::cluster::semantics::managed_fields::ListType;
    assert_eq!(list_type_at(&s, ".spec.arms"), ListType::Map(vec!["name".into()]));
    assert_eq!(list_type_at(&s, ".spec.arms[].tags"), ListType::Set);
    assert_eq!(list_type_at(&s, ".spec.plain"), ListType::Atomic);
}
