use super::*;

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}], "args": ["x", "y"]},
            {"name": "sidecar", "image": "side:1"}]}}}})
}

fn smp(orig: &Value, patch: Value) -> Value {
    strategic_merge(orig, &patch, "apps", "Deployment").unwrap()
}

#[test]
fn containers_merge_by_name() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}, {"name": "new", "image": "n:1"}]}}}}),
    );
    let c = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(c[0]["image"], "app:2");
    assert_eq!(c[0]["env"], json!([{"name": "A", "value": "1"}]), "untouched fields of a merged item stay");
    assert_eq!(c[1]["name"], "sidecar");
    assert_eq!(c[2], json!({"name": "new", "image": "n:1"}));
}

#[test]
fn env_and_ports_merge_by_their_keys_while_args_are_replaced() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app",
        "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 80, "name": "http"}], "args": ["z"]}]}}}}),
    );
    let c = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    assert_eq!(c["ports"], json!([{"containerPort": 80, "name": "http"}]));
    assert_eq!(c["args"], json!(["z"]));
}

#[test]
fn delete_and_replace_directives() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
    );
    assert_eq!(out["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]}}}}),
    );
    assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "o:1"}]));
    let out = smp(&deployment(), json!({"metadata": {"labels": {"$patch": "replace", "new": "x"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"new": "x"}));
    let out = smp(&deployment(), json!({"metadata": {"labels": {"tier": null}}}));
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn retain_keys_delete_from_primitive_list_and_set_element_order() {
    let out = smp(&deployment(), json!({"metadata": {"labels": {"$retainKeys": ["app"], "app": "web2"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"app": "web2"}));
    let pod = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "x"}, {"name": "y"}]}});
    let out = strategic_merge(
        &pod,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
        "",
        "Pod",
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    let out = strategic_merge(&pod, &json!({"spec": {"$setElementOrder/containers": [{"name": "y"}, {"name": "x"}], "containers": [{"name": "x", "image": "i"}]}}), "", "Pod").unwrap();
    assert_eq!(out["spec"]["containers"], json!([{"name": "y"}, {"name": "x", "image": "i"}]));
}

#[test]
fn service_ports_merge_by_port_and_selector_replaces_keys() {
    let svc = json!({"spec": {"selector": {"app": "my-app", "version": "v1.0.0"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let out = strategic_merge(&svc, &json!({"spec": {"selector": {"version": "v2.0.0"}}}), "", "Service").unwrap();
    assert_eq!(out["spec"]["selector"], json!({"app": "my-app", "version": "v2.0.0"}));
    let out =
        strategic_merge(&svc, &json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}), "", "Service").unwrap();
    assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
}

#[test]
fn errors() {
    let e = strategic_merge(&json!({}), &json!({}), "forklane.io", "Experiment").unwrap_err();
    assert_eq!(e.status()["code"], 415);
    assert_eq!(e.status()["reason"], "UnsupportedMediaType");
    let e = strategic_merge(
        &deployment(),
        &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        "apps",
        "Deployment",
    )
    .unwrap_err();
    assert_eq!(
        e,
        PatchError::BadRequest(
            r#"map: map[string]interface {}{"image":"x"} does not contain declared merge key: name"#.into()
        )
    );
    assert!(matches!(
        strategic_merge(&json!({}), &json!({"$patch": "bogus"}), "", "Pod"),
        Err(PatchError::BadRequest(_))
    ));
}

#[test]
fn merge_patch_rfc7386() {
    let out = merge_patch(&json!({"a": {"b": 1, "c": 2}, "l": [1, 2]}), &json!({"a": {"b": null, "d": 3}, "l": [3]}));
    assert_eq!(out, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
}

#[test]
fn json_patch_rfc6902() {
    let out = json_patch(
        &json!({"spec": {"replicas": 1}}),
        &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert!(matches!(
        json_patch(&json!({}), &json!([{"op": "test", "path": "/a", "value": 1}])),
        Err(PatchError::Unprocessable(_))
    ));
    assert!(matches!(json_patch(&json!({}), &json!({"op": "add"})), Err(PatchError::BadRequest(_))));
}

#[test]
fn json_patch_test_of_null_passes_on_a_missing_path() {
    // kube-rs' finalizer helper: test that there are no finalizers yet, then add the first.
    let obj = json!({"metadata": {"name": "x"}});
    let ops = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": []},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "f"}
    ]);
    assert_eq!(json_patch(&obj, &ops).unwrap()["metadata"]["finalizers"], json!(["f"]));
    let present = json!({"metadata": {"finalizers": ["g"]}});
    assert!(json_patch(&present, &ops).is_err(), "a present value is not null");
}
