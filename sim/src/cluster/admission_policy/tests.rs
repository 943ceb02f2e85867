use super::expressions::{self, Activation, Variable};
use super::*;
use crate::cluster::store::{DeleteOptions, Patch, Store, WriteOptions};
use forklane_core::clock::Clock;
use serde_json::json;

fn eval(object: Value, source: &str) -> std::result::Result<cel::Value, String> {
    let expression = expressions::compile(source, &[]).map_err(|e| e.to_string())?;
    let activation = Activation {
        object: cel_value::to_cel(&object),
        old_object: cel::Value::Null,
        request: cel::Value::Null,
        namespace_object: cel::Value::Null,
    };
    expressions::with_evaluator(activation, &[], |e| e.evaluate(&expression))
}

#[test]
fn json_becomes_cel_as_go_unstructured_objects_do() {
    assert_eq!(cel_value::to_cel(&json!(3)), cel::Value::Int(3));
    assert_eq!(cel_value::to_cel(&json!(0.5)), cel::Value::Float(0.5));
    assert_eq!(cel_value::to_cel(&json!(u64::MAX)), cel::Value::Float(u64::MAX as f64));
    let obj = json!({
        "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"replicas": 3, "ratio": 0.5, "ports": [{"port": 80}], "paused": false},
    });
    for (source, expected) in [
        ("object.spec.replicas == 3", true),
        ("object.spec.replicas + 1 == 4", true),
        ("object.spec.ratio == 0.5", true),
        ("object.metadata.labels['app.kubernetes.io/name'] == 'web'", true),
        ("has(object.spec.paused) && !object.spec.paused", true),
        ("has(object.spec.selector)", false),
        ("object.spec.ports.all(p, p.port < 1024)", true),
        ("object.spec.ports.exists(p, p.port == 443)", false),
        ("object.?spec.?minReadySeconds.orValue(0) == 0", true),
        ("object.?status.?replicas.orValue(7) == 7", true),
        ("object.spec.?replicas.orValue(0) == 3", true),
    ] {
        assert_eq!(eval(obj.clone(), source), Ok(cel::Value::Bool(expected)), "{source}");
    }
    assert_eq!(eval(obj.clone(), "object.metadata.name == 'x'"), Err("no such key: name".into()));
    // Kubernetes' libraries are there.
    assert_eq!(
        eval(obj, "'a-b'.split('-').size() == 2 && quantity('1Gi').isGreaterThan(quantity('1Mi'))"),
        Ok(cel::Value::Bool(true))
    );
}

#[test]
fn compile_errors_read_as_cel_go_issues() {
    let err = |source: &str, variables: &[&str]| expressions::compile(source, variables).unwrap_err().to_string();
    assert_eq!(
        err("object.spec.replicas > 1 && foo == 1", &[]),
        "compilation failed: ERROR: <input>:1:29: undeclared reference to 'foo' (in container '')\n | object.spec.replicas > 1 && foo == 1\n | ............................^"
    );
    assert_eq!(
        err("variables.count > 1", &["other"]),
        "compilation failed: ERROR: <input>:1:10: undefined field 'count'\n | variables.count > 1\n | .........^"
    );
    assert_eq!(
        err("object.spec.replicas <", &[]),
        "compilation failed: ERROR: <input>:1:23: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n | object.spec.replicas <\n | ......................^"
    );
    assert!(err("params.max > 1", &[]).contains("undeclared reference to 'params'"));
    assert!(
        err("authorizer.group('').resource('pods').check('get').allowed()", &[])
            .contains("not supported by this server")
    );
    for fine in [
        "object.items.all(i, i.size() > 0)",
        "math.greatest(1, 2) == 2",
        "variables.count > 1",
        "[1, 2].map(x, x * 2) == [2, 4]",
        "{'a': oldObject}.size() == 1 && namespaceObject == null && request.operation == 'CREATE'",
    ] {
        assert!(expressions::compile(fine, &["count"]).is_ok(), "{fine}");
    }
}

#[test]
fn variables_are_evaluated_when_selected_and_fail_only_their_users() {
    let variables = vec![
        Variable { name: "replicas".into(), expression: expressions::compile("object.spec.replicas", &[]) },
        Variable { name: "broken".into(), expression: expressions::compile("object.spec.nothing", &["replicas"]) },
        Variable {
            name: "double".into(),
            expression: expressions::compile("variables.replicas * 2", &["replicas", "broken"]),
        },
    ];
    let declared = ["replicas", "broken", "double"];
    let activation = Activation {
        object: cel_value::to_cel(&json!({"spec": {"replicas": 2}})),
        old_object: cel::Value::Null,
        request: cel::Value::Null,
        namespace_object: cel::Value::Null,
    };
    expressions::with_evaluator(activation, &variables, |e| {
        let run = |s: &str| e.evaluate(&expressions::compile(s, &declared).unwrap());
        assert_eq!(run("variables.double == 4"), Ok(cel::Value::Bool(true)));
        assert_eq!(
            run("variables.broken == 1"),
            Err("composited variable \"broken\" fails to evaluate: no such key: nothing".into())
        );
        assert_eq!(run("variables.replicas"), Ok(cel::Value::Int(2)));
    });
}

fn target<'a>(gvr: &'a Gvr, namespace: &str, object: &'a Value, operation: Operation) -> Target<'a> {
    Target {
        operation,
        gvr,
        subresource: "",
        kind: (gvr.group.clone(), gvr.version.clone(), "Thing".into()),
        namespace: namespace.into(),
        name: meta::name(object).into(),
        object: Some(Cow::Borrowed(object)),
        old_object: None,
        namespace_object: Some(Arc::new(json!({"metadata": {"name": namespace, "labels": {"env": "prod"}}}))),
        equivalents: vec![],
        dry_run: false,
        field_manager: None,
    }
}

#[test]
fn rules_match_groups_versions_operations_resources_and_scope() {
    let deployments = Gvr::new("apps", "v1", "deployments");
    let obj = json!({"metadata": {"name": "web", "labels": {"tier": "front"}}});
    let t = target(&deployments, "default", &obj, Operation::Create);
    let rules = |rule: Value| json!({"resourceRules": [rule]});
    let selected = |resources: Value| matching::select(&resources, &t, false).unwrap().is_some();
    let rule =
        json!({"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]});
    assert!(selected(rules(rule.clone())));
    assert!(selected(rules(
        json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]})
    )));
    assert!(!selected(rules(
        json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]})
    )));
    assert!(!selected(rules(
        json!({"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE", "DELETE"], "resources": ["deployments"]})
    )));
    // `*` is every resource but no subresource; `deployments/*` every subresource only.
    let status = Target { subresource: "status", ..target(&deployments, "default", &obj, Operation::Update) };
    let on_status = |resources: &[&str]| {
        let r = json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["*"], "resources": resources}]});
        matching::select(&r, &status, false).unwrap().is_some()
    };
    assert!(!on_status(&["*"]) && !on_status(&["deployments"]));
    assert!(on_status(&["deployments/*"]) && on_status(&["*/status"]) && on_status(&["*/*"]));
    let scoped = |scope: &str| {
        rules(
            json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"], "scope": scope}),
        )
    };
    assert!(selected(scoped("Namespaced")) && !selected(scoped("Cluster")));
    let mut named = rule.clone();
    named["resourceNames"] = json!(["other"]);
    assert!(!selected(rules(named.clone())));
    named["resourceNames"] = json!(["other", "web"]);
    assert!(selected(rules(named)));
    let mut excluded = rules(rule.clone());
    excluded["excludeResourceRules"] = json!([{"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"], "resources": ["deployments"], "resourceNames": ["web"]}]);
    assert!(!selected(excluded));
}

#[test]
fn selectors_and_equivalent_versions() {
    let widgets_v2 = Gvr::new("example.com", "v2", "widgets");
    let obj = json!({"metadata": {"name": "w", "labels": {"tier": "front"}}});
    let t = Target {
        equivalents: vec![Gvr::new("example.com", "v1", "widgets")],
        ..target(&widgets_v2, "default", &obj, Operation::Create)
    };
    let v1_rule =
        json!([{"apiGroups": ["example.com"], "apiVersions": ["v1"], "operations": ["*"], "resources": ["widgets"]}]);
    let select = |resources: Value| matching::select(&resources, &t, false).unwrap();
    assert_eq!(
        select(json!({"resourceRules": v1_rule, "matchPolicy": "Equivalent"})),
        Some(Gvr::new("example.com", "v1", "widgets"))
    );
    assert_eq!(select(json!({"resourceRules": v1_rule, "matchPolicy": "Exact"})), None);
    let all = json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}]);
    let with = |field: &str, selector: Value| {
        let mut resources = json!({"resourceRules": all});
        resources[field] = selector;
        select(resources).is_some()
    };
    assert!(with("namespaceSelector", json!({"matchLabels": {"env": "prod"}})));
    assert!(!with(
        "namespaceSelector",
        json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]})
    ));
    assert!(with("objectSelector", json!({"matchLabels": {"tier": "front"}})));
    assert!(!with("objectSelector", json!({"matchLabels": {"tier": "back"}})));
    // A binding without rules narrows by its selectors only.
    assert!(matching::select(&json!({"objectSelector": {}}), &t, true).unwrap().is_some());
    // Cluster-scoped objects other than namespaces are never excluded by a namespaceSelector.
    let cluster = target(&widgets_v2, "", &obj, Operation::Create);
    let resources = json!({"resourceRules": all, "namespaceSelector": {"matchLabels": {"env": "dev"}}});
    assert!(matching::select(&resources, &cluster, false).unwrap().is_some());
}

const CONFIGMAPS: [&str; 3] = ["", "v1", "configmaps"];

fn store_with(policy: Value, actions: &[&str]) -> Store {
    let store = Store::new(Default::default(), Clock::real());
    let opts = WriteOptions::default();
    store.create(&Gvr::new("", "v1", "namespaces"), None, json!({"metadata": {"name": "default"}}), &opts).unwrap();
    let policies = Gvr::new(GROUP, "v1", POLICIES);
    store.create(&policies, None, policy, &opts).unwrap();
    let binding = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": actions}});
    store.create(&Gvr::new(GROUP, "v1", BINDINGS), None, binding, &opts).unwrap();
    store
}

fn small_configmaps_policy() -> Value {
    json!({
        "metadata": {"name": "p"},
        "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["configmaps"]}]},
            "validations": [{"expression": "request.operation == 'DELETE' || size(object.data) <= 1", "messageExpression": "'too many keys: ' + string(size(object.data))"}],
        },
    })
}

fn configmap(keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), json!("v"))).collect();
    json!({"metadata": {"name": "cm"}, "data": data})
}

#[test]
fn deny_refuses_creates_patches_and_dry_runs_with_the_apiservers_status() {
    let store = store_with(small_configmaps_policy(), &["Deny"]);
    let gvr = Gvr::new(CONFIGMAPS[0], CONFIGMAPS[1], CONFIGMAPS[2]);
    let stored = store.get(&Gvr::new(GROUP, "v1", POLICIES), None, "p").unwrap();
    assert_eq!(stored["spec"]["failurePolicy"], "Fail");
    assert_eq!(stored["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
    assert_eq!(stored["spec"]["matchConstraints"]["resourceRules"][0]["scope"], "*");

    let dry = WriteOptions { dry_run: true, ..Default::default() };
    let refused = store.create(&gvr, Some("default"), configmap(&["a", "b"]), &dry).unwrap_err();
    let message = "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: too many keys: 2";
    assert_eq!(
        refused.to_status(),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("configmaps \"cm\" is forbidden: {message}"),
            "reason": "Invalid",
            "details": {"name": "cm", "kind": "configmaps", "causes": [{"message": message}]},
            "code": 422,
        })
    );
    let opts = WriteOptions::default();
    store.create(&gvr, Some("default"), configmap(&["a"]), &opts).unwrap();
    let patch = Patch::Merge(json!({"data": {"b": "v"}}));
    let err = store.patch(&gvr, Some("default"), "cm", patch, &opts).unwrap_err();
    assert_eq!(err.to_string(), format!("configmaps \"cm\" is forbidden: {message}"));
    store.delete(&gvr, Some("default"), "cm", &DeleteOptions::default()).unwrap();
}

#[test]
fn warn_and_audit_admit_and_report() {
    let store = store_with(small_configmaps_policy(), &["Warn", "Audit"]);
    let gvr = Gvr::new(CONFIGMAPS[0], CONFIGMAPS[1], CONFIGMAPS[2]);
    let opts = WriteOptions::default();
    store.create(&gvr, Some("default"), configmap(&["a", "b"]), &opts).unwrap();
    assert_eq!(
        opts.warnings.borrow().as_slice(),
        ["Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': too many keys: 2"]
    );
    let annotation = &opts.audit_annotations.borrow()[VALIDATION_FAILURE];
    assert_eq!(
        serde_json::from_str::<Value>(annotation).unwrap(),
        json!([{"message": "too many keys: 2", "policy": "p", "binding": "b", "expressionIndex": 0, "validationActions": ["Warn", "Audit"]}])
    );
}

#[test]
fn audit_annotations_are_json_as_go_writes_it() {
    let failure = ValidationFailure {
        message: "failed expression: size(object.data) <= 2 && x > 1",
        policy: &json!("p"),
        binding: "b",
        expression_index: 1,
        validation_actions: &json!(["Audit"]),
    };
    assert_eq!(
        go_json(&[failure]),
        r#"[{"message":"failed expression: size(object.data) \u003c= 2 \u0026\u0026 x \u003e 1","policy":"p","binding":"b","expressionIndex":1,"validationActions":["Audit"]}]"#
    );
}

#[test]
fn failure_policy_match_conditions_and_audit_annotations() {
    let mut policy = small_configmaps_policy();
    policy["spec"]["validations"] = json!([{"expression": "object.data.missing == 'x'", "reason": "Forbidden"}]);
    policy["spec"]["matchConditions"] = json!([{"name": "not-exempt", "expression": "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)"}]);
    policy["spec"]["auditAnnotations"] = json!([{"key": "keys", "valueExpression": "string(size(object.data))"}]);
    let store = store_with(policy.clone(), &["Deny"]);
    let gvr = Gvr::new(CONFIGMAPS[0], CONFIGMAPS[1], CONFIGMAPS[2]);
    let opts = WriteOptions::default();
    let err = store.create(&gvr, Some("default"), configmap(&["a"]), &opts).unwrap_err();
    assert_eq!(err.code(), 422);
    assert!(
        err.to_string().ends_with(
            "denied request: expression 'object.data.missing == 'x'' resulted in error: no such key: missing"
        ),
        "{err}"
    );
    let mut exempt = configmap(&["a"]);
    exempt["metadata"]["labels"] = json!({"exempt": "yes"});
    store.create(&gvr, Some("default"), exempt, &opts).unwrap();
    assert!(opts.audit_annotations.borrow().is_empty());

    let policies = Gvr::new(GROUP, "v1", POLICIES);
    let ignore = Patch::Merge(json!({"spec": {"failurePolicy": "Ignore"}}));
    store.patch(&policies, None, "p", ignore, &opts).unwrap();
    let opts = WriteOptions::default();
    store.create(&gvr, Some("default"), json!({"metadata": {"name": "other"}, "data": {"a": "1"}}), &opts).unwrap();
    assert_eq!(opts.audit_annotations.borrow().get("p/keys").map(String::as_str), Some("1"));

    // A false validation with a reason is refused with the reason's code.
    let forbidding = Patch::Merge(
        json!({"spec": {"validations": [{"expression": "false", "reason": "Forbidden", "message": " no "}]}}),
    );
    store.patch(&policies, None, "p", forbidding, &opts).unwrap();
    let err = store.create(&gvr, Some("default"), json!({"metadata": {"name": "third"}}), &opts).unwrap_err();
    assert_eq!((err.code(), err.to_status()["reason"].clone()), (403, json!("Forbidden")));
    assert!(err.to_string().ends_with("denied request: no"), "{err}");
}

#[test]
fn bad_definitions_are_refused_with_field_paths() {
    let store = Store::new(Default::default(), Clock::real());
    let opts = WriteOptions::default();
    let policies = Gvr::new(GROUP, "v1", POLICIES);
    let policy = json!({
        "metadata": {"name": "p"},
        "spec": {
            "failurePolicy": "Sometimes",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["PATCH"], "resources": ["*", "pods"]}]},
            "validations": [{"expression": "object.spec.replicas <"}, {"expression": "true", "message": "two\nlines"}],
        },
    });
    let err = store.create(&policies, None, policy, &opts).unwrap_err().to_string();
    for expected in [
        "spec.failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\"",
        "spec.paramKind: Forbidden: parameter resources are not supported by this server",
        "spec.matchConstraints.resourceRules[0].operations[0]: Unsupported value: \"PATCH\"",
        "spec.matchConstraints.resourceRules[0].resources: Invalid value: []interface {}{\"*\", \"pods\"}: if '*' is present, must not specify other resources without subresources",
        "spec.validations[0].expression: Invalid value: \"object.spec.replicas <\": compilation failed: ERROR: <input>:1:",
        "spec.validations[1].message: Invalid value: \"two\\nlines\": message must not contain line breaks",
    ] {
        assert!(err.contains(expected), "{expected}\nnot in\n{err}");
    }
    let bindings = Gvr::new(GROUP, "v1", BINDINGS);
    let binding = json!({"metadata": {"name": "b"}, "spec": {"validationActions": ["Deny", "Warn", "Deny"]}});
    let err = store.create(&bindings, None, binding, &opts).unwrap_err().to_string();
    for expected in [
        "spec.policyName: Required value",
        "spec.validationActions[2]: Duplicate value: \"Deny\"",
        "spec.validationActions: Invalid value: []interface {}{\"Deny\", \"Warn\", \"Deny\"}: must not contain both Deny and Warn",
    ] {
        assert!(err.contains(expected), "{expected}\nnot in\n{err}");
    }
}

#[test]
fn policies_and_bindings_travel_as_protobuf() {
    let rule = json!({"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"], "scope": "*", "resourceNames": ["web"]});
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [rule], "matchPolicy": "Equivalent", "namespaceSelector": {"matchLabels": {"env": "prod"}}, "objectSelector": {}},
            "validations": [{"expression": "object.spec.replicas <= 5", "messageExpression": "'too many'", "reason": "Forbidden"}],
            "variables": [{"name": "replicas", "expression": "object.spec.replicas"}],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "b"},
        "spec": {"policyName": "p", "validationActions": ["Warn", "Audit"], "matchResources": {"excludeResourceRules": [rule]}},
    });
    for object in [policy, binding] {
        let bytes = crate::cluster::protobuf::encode(&object).expect("a protobuf encoding");
        assert_eq!(crate::cluster::protobuf::decode(&bytes).unwrap(), object);
    }
}
