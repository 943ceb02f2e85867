use super::*;
use crate::cluster::semantics::builtin;
use serde_json::json;

fn types() -> impl Fn(&str) -> ListType {
    builtin::list_type
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 80}]}]}}}})
}

#[test]
fn fields_v1_encoding_matches_kubernetes() {
    let set = field_set(&deployment(2, "nginx"), &types());
    assert_eq!(
        to_fields_v1(&set),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                r#"k:{"name":"app"}"#: {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                    r#"k:{"containerPort":80,"protocol":"TCP"}"#: {".": {}, "f:containerPort": {}}}}}}}}
        })
    );
    assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
}

#[test]
fn sets_use_value_elements_and_atomic_lists_are_leaves() {
    let set = field_set(&json!({"metadata": {"finalizers": ["a"]}, "spec": {"args": ["x", "y"]}}), &types());
    assert_eq!(to_fields_v1(&set), json!({"f:metadata": {"f:finalizers": {r#"v:"a""#: {}}}, "f:spec": {"f:args": {}}}));
}

#[test]
fn get_and_remove_follow_keys() {
    let mut d = deployment(2, "nginx");
    let path: FieldPath = vec![
        "f:spec".into(),
        "f:template".into(),
        "f:spec".into(),
        "f:containers".into(),
        r#"k:{"name":"app"}"#.into(),
        "f:image".into(),
    ];
    assert_eq!(get(&d, &path), Some(&json!("nginx")));
    remove(&mut d, &path[..5]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"], json!([]));
}

#[test]
fn update_takes_over_changed_fields_and_drops_removed_ones() {
    let created = update_managed_fields(
        None,
        &deployment(2, "nginx"),
        "kubectl-create",
        "apps/v1",
        Operation::Update,
        "2024-01-01T00:00:00Z",
        &types(),
    );
    let entries = read_entries(&created);
    assert_eq!(entries.len(), 1);
    assert!(entries[0].fields.contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));

    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["metadata"].as_object_mut().unwrap().remove("labels");
    let updated = update_managed_fields(
        Some(&created),
        &scaled,
        "kubectl-scale",
        "apps/v1",
        Operation::Update,
        "2024-01-02T00:00:00Z",
        &types(),
    );
    let entries = read_entries(&updated);
    let by = |m: &str| entries.iter().find(|e| e.manager == m).unwrap().fields.clone();
    let replicas = vec!["f:spec".to_string(), "f:replicas".to_string()];
    assert!(by("kubectl-scale").contains(&replicas));
    assert!(!by("kubectl-create").contains(&replicas));
    assert!(!by("kubectl-create").contains(&vec![
        "f:metadata".to_string(),
        "f:labels".to_string(),
        "f:app".to_string()
    ]));
    // Entries are sorted by time; the untouched manager keeps its time.
    assert_eq!(updated["metadata"]["managedFields"][0]["manager"], "kubectl-create");
    assert_eq!(updated["metadata"]["managedFields"][0]["time"], "2024-01-01T00:00:00Z");
    assert_eq!(updated["metadata"]["managedFields"][1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}
