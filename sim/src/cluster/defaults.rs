//! Defaulting of built-in objects, as the apiserver's `SetDefaults_*` functions and default
//! admission plugins fill them, so that `kubectl get -o yaml` and three-way patches see the
//! same fields as on a real cluster.

use serde_json::{Map, Value, json};

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("object")
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Value {
    let v = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if v.is_null() {
        *v = json!({});
    }
    v
}

/// `SetDefaults_PodSpec` and `SetDefaults_Container`.
pub(crate) fn pod_spec(spec: &mut Value) {
    let s = obj(spec);
    default(s, "restartPolicy", json!("Always"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "securityContext", json!({}));
    default(s, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        for c in s.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            container(c);
        }
    }
}

fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or_default().to_string();
    let c = obj(c);
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    default(c, "imagePullPolicy", json!(pull_policy(&image)));
    for port in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        default(obj(port), "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            let p = obj(p);
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(get) = p.get_mut("httpGet").filter(|g| g.is_object()) {
                default(obj(get), "scheme", json!("HTTP"));
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or_default();
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    match last.split_once(':') {
        Some((_, "latest")) | None if !image.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

/// Pod-level defaults plus what the default admission plugins add on create.
pub(crate) fn pod(pod: &mut Value) {
    let spec = child(obj(pod), "spec");
    pod_spec(spec);
    let s = obj(spec);
    default(s, "enableServiceLinks", json!(true));
    default(s, "serviceAccountName", json!("default"));
    default(s, "serviceAccount", json!("default"));
    default(s, "priority", json!(0));
    default(s, "preemptionPolicy", json!("PreemptLowerPriority"));
    default(
        s,
        "tolerations",
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]),
    );
}

fn pod_template(spec: &mut Map<String, Value>) {
    let template = obj(child(spec, "template"));
    let meta = obj(child(template, "metadata"));
    // metav1.Time without a value serialises as `creationTimestamp: null` in templates.
    default(meta, "creationTimestamp", Value::Null);
    pod_spec(child(template, "spec"));
}

/// `SetDefaults_Deployment` (apps/v1).
pub(crate) fn deployment(d: &mut Value) {
    let spec = obj(child(obj(d), "spec"));
    default(spec, "replicas", json!(1));
    let strategy = obj(child(spec, "strategy"));
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = obj(child(strategy, "rollingUpdate"));
        default(ru, "maxUnavailable", json!("25%"));
        default(ru, "maxSurge", json!("25%"));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    pod_template(spec);
}

/// `SetDefaults_ReplicaSet` (apps/v1).
pub(crate) fn replica_set(rs: &mut Value) {
    let spec = obj(child(obj(rs), "spec"));
    default(spec, "replicas", json!(1));
    pod_template(spec);
}

/// Service defaults that do not need allocation (IPs and node ports are in `admission`).
pub(crate) fn service(svc: &mut Value) {
    let spec = obj(child(obj(svc), "spec"));
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        let p = obj(port);
        default(p, "protocol", json!("TCP"));
        if let Some(port_number) = p.get("port").cloned() {
            default(p, "targetPort", port_number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_follows_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/app"), "Always");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn deployment_defaults_match_the_apiserver() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]}]}}}});
        deployment(&mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["metadata"]["creationTimestamp"], Value::Null);
    }
}
