use super::*;
use crate::cluster::semantics::builtin;
use crate::cluster::semantics::managed_fields::{Operation, read_entries, update_managed_fields};
use serde_json::json;

fn types() -> impl Fn(&str) -> ListType {
    builtin::list_type
}

const T1: &str = "2024-01-01T00:00:00Z";
const T2: &str = "2024-01-02T00:00:00Z";

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": data})
}

#[test]
fn apply_creates_and_records_apply_entry() {
    let out = server_side_apply(None, &cm(json!({"a": "1"})), "kubectl", false, T1, &types()).unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));
    let mf = &out["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl");
    assert_eq!(mf["operation"], "Apply");
    assert_eq!(mf["apiVersion"], "v1");
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert_eq!(mf["fieldsV1"], json!({"f:data": {"f:a": {}}}));
}

#[test]
fn field_no_longer_applied_is_removed_unless_shared() {
    let live = server_side_apply(None, &cm(json!({"a": "1", "b": "2"})), "kubectl", false, T1, &types()).unwrap();
    let out = server_side_apply(Some(&live), &cm(json!({"a": "1"})), "kubectl", false, T2, &types()).unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));

    // Another manager applying the same value shares ownership, so b survives.
    let shared = server_side_apply(Some(&live), &cm(json!({"b": "2"})), "other", false, T2, &types()).unwrap();
    let out = server_side_apply(Some(&shared), &cm(json!({"a": "1"})), "kubectl", false, T2, &types()).unwrap();
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
}

#[test]
fn changing_a_field_owned_by_another_manager_conflicts() {
    let live = server_side_apply(None, &cm(json!({"a": "1"})), "alice", false, T1, &types()).unwrap();
    let err = server_side_apply(Some(&live), &cm(json!({"a": "2"})), "bob", false, T2, &types()).unwrap_err();
    assert_eq!(err, ApplyConflicts(vec![Conflict { manager: "\"alice\"".into(), field: ".data.a".into() }]));
    let status = conflict_status(&err);
    assert_eq!(status["code"], 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(status["message"], r#"Apply failed with 1 conflict: conflict with "alice": .data.a"#);
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.a"})
    );

    // Forced: bob takes the field over.
    let out = server_side_apply(Some(&live), &cm(json!({"a": "2"})), "bob", true, T2, &types()).unwrap();
    assert_eq!(out["data"]["a"], "2");
    let entries = read_entries(&out);
    assert_eq!(entries.len(), 1, "alice owned nothing else and is dropped: {entries:?}");
    assert_eq!(entries[0].manager, "bob");
}

#[test]
fn conflict_with_update_manager_names_version_and_time() {
    let d =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}});
    let live = update_managed_fields(None, &d, "kubectl-client-side-apply", "apps/v1", Operation::Update, T1, &types());
    let mut applied = d.clone();
    applied["spec"]["replicas"] = json!(3);
    let err = server_side_apply(Some(&live), &applied, "kubectl", false, T2, &types()).unwrap_err();
    assert_eq!(
        conflict_status(&err)["message"],
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1 at 2024-01-01T00:00:00Z: .spec.replicas"#
    );
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let err = ApplyConflicts(vec![
        Conflict { manager: "\"b\"".into(), field: ".x".into() },
        Conflict { manager: "\"a\"".into(), field: ".y".into() },
        Conflict { manager: "\"b\"".into(), field: ".z".into() },
    ]);
    assert_eq!(
        conflict_status(&err)["message"],
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .y\nconflicts with \"b\":\n- .x\n- .z"
    );
}

fn deploy(containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": containers}}}})
}

#[test]
fn associative_lists_merge_by_key_across_managers() {
    let live = server_side_apply(None, &deploy(json!([{"name": "app", "image": "a:1"}])), "alice", false, T1, &types())
        .unwrap();
    let out = server_side_apply(
        Some(&live),
        &deploy(json!([{"name": "sidecar", "image": "s:1"}])),
        "bob",
        false,
        T2,
        &types(),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "a:1"}, {"name": "sidecar", "image": "s:1"}])
    );
    // alice drops her container: only bob's remains.
    let out = server_side_apply(Some(&out), &deploy(json!([])), "alice", false, T2, &types()).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "sidecar", "image": "s:1"}]));
}

#[test]
fn atomic_lists_are_replaced_and_conflict_as_a_whole() {
    let live =
        server_side_apply(None, &deploy(json!([{"name": "app", "args": ["a", "b"]}])), "alice", false, T1, &types())
            .unwrap();
    let err =
        server_side_apply(Some(&live), &deploy(json!([{"name": "app", "args": ["c"]}])), "bob", false, T2, &types())
            .unwrap_err();
    assert_eq!(err.0[0].field, r#".spec.template.spec.containers[name="app"].args"#);
    let out =
        server_side_apply(Some(&live), &deploy(json!([{"name": "app", "args": ["c"]}])), "alice", false, T2, &types())
            .unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["args"], json!(["c"]));
}

#[test]
fn structs_emptied_by_pruning_are_removed() {
    let with = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "annotations": {"x": "1"}}});
    let live = server_side_apply(None, &with, "kubectl", false, T1, &types()).unwrap();
    let out = server_side_apply(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}),
        "kubectl",
        false,
        T2,
        &types(),
    )
    .unwrap();
    assert!(out["metadata"].get("annotations").is_none(), "{out}");
    assert_eq!(out["metadata"]["name"], "s");
}

#[test]
fn path_strings_match_fieldpath() {
    let p: Vec<String> =
        vec!["f:spec".into(), "f:ports".into(), r#"k:{"port":80,"protocol":"TCP"}"#.into(), "f:name".into()];
    assert_eq!(path_string(&p), r#".spec.ports[port=80,protocol="TCP"].name"#);
    assert_eq!(
        path_string(&["f:metadata".into(), "f:finalizers".into(), r#"v:"a""#.into()]),
        r#".metadata.finalizers[="a"]"#
    );
}
