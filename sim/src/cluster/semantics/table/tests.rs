use super::printers::pod_status_reason;
use super::*;

const NOW: &str = "2024-01-01T01:00:00Z";

fn cells(kind: &str, obj: Value) -> Vec<Value> {
    let t = table(kind, &[obj], None, NOW, IncludeObject::None);
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

fn names(t: &Value) -> Vec<String> {
    t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn pod_columns_and_cells() {
    let pod = json!({"metadata": {"name": "web-1", "creationTimestamp": "2024-01-01T00:41:00Z"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}, "lastState": {"terminated": {"finishedAt": "2024-01-01T00:55:00Z"}}},
            {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
    let t = table("Pod", std::slice::from_ref(&pod), None, NOW, IncludeObject::Metadata);
    assert_eq!(
        names(&t),
        ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["web-1", "1/2", "CrashLoopBackOff", "2 (5m ago)", "19m", "10.0.0.5", "n1", "<none>", "<none>"])
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web-1");
}

#[test]
fn pod_status_reasons() {
    assert_eq!(pod_status_reason(&json!({"status": {"phase": "Pending"}})), "Pending");
    assert_eq!(
        pod_status_reason(
            &json!({"status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}})
        ),
        "ContainerCreating"
    );
    assert_eq!(
        pod_status_reason(
            &json!({"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}})
        ),
        "Completed"
    );
    assert_eq!(
        pod_status_reason(
            &json!({"status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}})
        ),
        "ExitCode:3"
    );
    assert_eq!(
        pod_status_reason(
            &json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ),
        "Terminating"
    );
    assert_eq!(
        pod_status_reason(
            &json!({"spec": {"initContainers": [{"name": "i"}, {"name": "j"}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0}}}, {"state": {"running": {}}}]}})
        ),
        "Init:1/2"
    );
}

#[test]
fn service_cells() {
    let svc = json!({"metadata": {"name": "my-app", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 32532, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"version": "v1", "app": "my-app"}}});
    assert_eq!(
        cells("Service", svc),
        [
            json!("my-app"),
            json!("NodePort"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80:32532/TCP,53/UDP"),
            json!("60m"),
            json!("app=my-app,version=v1")
        ]
    );
    let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}});
    assert_eq!(cells("Service", lb)[3], "<pending>");
}

#[test]
fn deployment_and_replicaset_cells() {
    let d = json!({"metadata": {"name": "web", "creationTimestamp": "2023-12-30T22:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "side", "image": "envoy"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    let t = table("Deployment", std::slice::from_ref(&d), None, NOW, IncludeObject::None);
    assert_eq!(names(&t), ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]);
    assert_eq!(t["rows"][0]["cells"], json!(["web", "2/3", 3, 2, "27h", "app,side", "nginx:1,envoy", "app=web"]));
    assert_eq!(cells("ReplicaSet", d)[1..4], [json!(3), json!(0), json!(2)]);
}

#[test]
fn small_kinds() {
    assert_eq!(
        cells("ConfigMap", json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})),
        [json!("c"), json!(2), json!("<unknown>")]
    );
    assert_eq!(
        cells("Secret", json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}}))[1..3],
        [json!("Opaque"), json!(1)]
    );
    assert_eq!(
        cells("Namespace", json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}))[1],
        "Active"
    );
    let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "1.1.1.1"}, {"ip": "1.1.1.2"}, {"ip": "1.1.1.3"}, {"ip": "1.1.1.4"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("Endpoints", ep)[1], "1.1.1.1:80,1.1.1.2:80,1.1.1.3:80 + 1 more...");
    assert_eq!(cells("Lease", json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}))[1], "me");
    let crd = table(
        "CustomResourceDefinition",
        &[json!({"metadata": {"name": "experiments.forklane.io", "creationTimestamp": "2024-01-01T00:00:00Z"}})],
        None,
        NOW,
        IncludeObject::None,
    );
    assert_eq!(names(&crd), ["Name", "Created At"]);
    assert_eq!(crd["rows"][0]["cells"], json!(["experiments.forklane.io", "2024-01-01T00:00:00Z"]));
}

#[test]
fn custom_resource_columns() {
    let cols = [
        json!({"name": "Phase", "type": "string", "jsonPath": ".status.phase"}),
        json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
        json!({"name": "Arms", "type": "integer", "jsonPath": ".spec.armCount", "priority": 1}),
        json!({"name": "Started", "type": "date", "jsonPath": ".status.startedAt"}),
    ];
    let obj = json!({"metadata": {"name": "exp"}, "spec": {"armCount": 2}, "status": {"phase": "Running", "startedAt": "2024-01-01T00:30:00Z", "conditions": [{"type": "Ready", "status": "True"}]}});
    let t = table("Experiment", &[obj], Some(&cols), NOW, IncludeObject::Object);
    assert_eq!(names(&t), ["Name", "Phase", "Ready", "Arms", "Started"]);
    assert_eq!(t["columnDefinitions"][3]["priority"], 1);
    assert_eq!(t["rows"][0]["cells"], json!(["exp", "Running", "True", 2, "30m"]));
    assert_eq!(t["rows"][0]["object"]["spec"]["armCount"], 2);
    let plain = table(
        "Experiment",
        &[json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:59:00Z"}})],
        Some(&[]),
        NOW,
        IncludeObject::None,
    );
    assert_eq!(names(&plain), ["Name", "Age"]);
    assert_eq!(plain["rows"][0]["cells"], json!(["x", "60s"]));
}

#[test]
fn custom_string_columns_print_lists_as_json_and_mistyped_values_as_empty() {
    // The Gateway API's HTTPRoute prints `.spec.hostnames` in a string column.
    let cols = [
        json!({"name": "Hostnames", "type": "string", "jsonPath": ".spec.hostnames"}),
        json!({"name": "Port", "type": "string", "jsonPath": ".spec.port"}),
        json!({"name": "Count", "type": "integer", "jsonPath": ".spec.name"}),
        json!({"name": "On", "type": "boolean", "jsonPath": ".spec.on"}),
    ];
    let obj = json!({"metadata": {"name": "r"}, "spec": {"hostnames": ["a.example.com", "<b>&"], "port": 80, "name": "x", "on": true}});
    let t = table("HTTPRoute", &[obj], Some(&cols), NOW, IncludeObject::None);
    assert_eq!(t["rows"][0]["cells"], json!(["r", r#"["a.example.com","\u003cb\u003e\u0026"]"#, "80", null, true]));
}
