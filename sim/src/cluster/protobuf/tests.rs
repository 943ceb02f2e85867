//! The envelope and object decoding, against bodies encoded by k8s-pb's generated types (as
//! client-go encodes them from the same protos).

use super::*;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

fn envelope(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

/// ObjectMeta as Go writes it: every non-pointer field present, zero or not.
fn meta_named(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: [("app".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn a_secret_reads_as_its_json_body() {
    let secret = core::Secret {
        metadata: Some(meta_named("s")),
        data: [("password".to_string(), b"hunter2".to_vec())].into(),
        r#type: Some("Opaque".into()),
        immutable: None,
        ..Default::default()
    };
    let decoded = decode(&envelope("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "creationTimestamp": null, "labels": {"app": "s"}},
            "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
    );
}

#[test]
fn a_deployment_keeps_pointers_at_zero_and_reads_int_or_string_quantities_and_times() {
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.27".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [("cpu".to_string(), Quantity { string: Some("500m".into()) })].into(),
            ..Default::default()
        }),
        stdin: Some(false),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time { seconds: Some(1_714_557_600), nanos: Some(0) }),
            ..meta_named("web")
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            paused: Some(false),
            min_ready_seconds: Some(0),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: Some("25%".into()) }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta_named("web")),
                spec: Some(core::PodSpec { containers: vec![container], ..Default::default() }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let decoded = decode(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(decoded["metadata"]["creationTimestamp"], "2024-05-01T10:00:00Z");
    let spec = &decoded["spec"];
    assert_eq!(spec["replicas"], 0, "a pointer set to zero stays: {spec}");
    assert!(spec.get("paused").is_none() && spec.get("minReadySeconds").is_none(), "{spec}");
    assert_eq!(spec["strategy"]["rollingUpdate"], json!({"maxSurge": "25%", "maxUnavailable": 1}));
    assert_eq!(
        spec["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m"}}}])
    );
    assert_eq!(decoded["status"], json!({}));
}

#[test]
fn objects_and_lists_encode_back_to_what_decodes_to_the_same_json() {
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team", "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"b": "2", "a": "1"}, "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"memory": "64Mi"}}, "securityContext": {"runAsUser": -1}}]}}},
        "status": {}});
    let bytes = encode(&object).expect("a built-in kind encodes");
    // (A `null` time is not written, so `creationTimestamp: null` would come back absent.)
    assert_eq!(decode(&bytes).unwrap(), object);
    let list = json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "s"}, "data": {"k": "aGk="}}]});
    assert_eq!(decode(&encode(&list).expect("a list encodes")).unwrap(), list);
    assert_eq!(encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})), None, "no protobuf for CRDs");
    assert_eq!(encode(&json!({"apiVersion": "autoscaling/v1", "kind": "Scale"})), None);
}

#[test]
fn structs_embedded_inline_read_at_the_outer_level() {
    let config_map = core::ConfigMapVolumeSource {
        local_object_reference: Some(core::LocalObjectReference { name: Some("settings".into()) }),
        default_mode: Some(420),
        ..Default::default()
    };
    let volume = core::Volume {
        name: Some("config".into()),
        volume_source: Some(core::VolumeSource { config_map: Some(config_map), ..Default::default() }),
    };
    let probe = core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: Some("/healthz".into()),
                port: Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: Some("http".into()) }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    let container = core::Container { name: Some("c".into()), readiness_probe: Some(probe), ..Default::default() };
    let pod = core::Pod {
        metadata: Some(meta_named("p")),
        spec: Some(core::PodSpec { volumes: vec![volume], containers: vec![container], ..Default::default() }),
        status: None,
    };
    let decoded = decode(&envelope("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        decoded["spec"]["volumes"],
        json!([{"name": "config", "configMap": {"name": "settings", "defaultMode": 420}}])
    );
    assert_eq!(
        decoded["spec"]["containers"][0]["readinessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5})
    );
    let mut written = decoded.clone();
    written["metadata"].as_object_mut().unwrap().remove("creationTimestamp"); // a null time is not written
    assert_eq!(decode(&encode(&decoded).expect("a pod encodes")).unwrap(), written);
}

#[test]
fn a_body_without_the_magic_is_refused_naming_it() {
    let err = decode(b"{\"kind\":\"Namespace\"}").unwrap_err();
    assert!(err.to_string().contains("expected prefix [107 56 115 0]"), "{err}");
    assert_eq!(Error::from(err).code(), 400);
}

#[test]
fn a_malformed_envelope_or_object_is_a_bad_request_naming_the_problem() {
    let err = decode(b"k8s\0\x0a\x05ab").unwrap_err();
    assert!(err.to_string().starts_with("the protobuf envelope (runtime.Unknown) is malformed"), "{err}");
    assert_eq!(Error::from(err).code(), 400);

    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some("v1".into()), kind: Some("ConfigMap".into()) }),
        // field 1 (metadata) length 9, but only 2 bytes follow
        raw: Some(vec![0x0a, 9, 0x0a, 0]),
        ..Default::default()
    };
    let err = decode(&[MAGIC, &unknown.encode_to_vec()].concat()).unwrap_err();
    assert_eq!(err.to_string(), "the protobuf body of ConfigMap is malformed: unexpected end of data");
    assert_eq!(Error::from(err).code(), 400);
    let nested = Unknown {
        type_meta: Some(TypeMeta { api_version: Some("v1".into()), kind: Some("ConfigMap".into()) }),
        // metadata holds a name (field 1) of length 5 with no bytes after it
        raw: Some(vec![0x0a, 2, 0x0a, 5]),
        ..Default::default()
    };
    let err = decode(&[MAGIC, &nested.encode_to_vec()].concat()).unwrap_err();
    assert_eq!(err.to_string(), "the protobuf body of ConfigMap is malformed: metadata: unexpected end of data");

    let no_kind = Unknown { raw: Some(vec![]), ..Default::default() };
    assert!(matches!(decode(&[MAGIC, &no_kind.encode_to_vec()].concat()), Err(ProtobufError::NoKind)));
    let gzipped = Unknown {
        type_meta: Some(TypeMeta { api_version: Some("v1".into()), kind: Some("ConfigMap".into()) }),
        content_encoding: Some("gzip".into()),
        ..Default::default()
    };
    assert!(matches!(decode(&[MAGIC, &gzipped.encode_to_vec()].concat()), Err(ProtobufError::ContentEncoding(_))));
}

#[test]
fn a_kind_without_protobuf_is_unsupported_media_naming_type_and_kind() {
    let err = decode(&envelope("example.com/v1", "Widget", &meta_named("w"))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(MEDIA_TYPE) && msg.contains("Widget of example.com/v1"), "{msg}");
    assert_eq!(Error::from(err).code(), 415);
}

#[test]
fn every_message_the_table_names_is_in_it() {
    for m in table::MESSAGES {
        for f in m.fields {
            if let schema::Ty::Message(n) | schema::Ty::MapOf(n) | schema::Ty::Inline(n) = f.ty {
                assert!(schema::message(n).is_some(), "{} field {} names {n}", m.name, f.json);
            }
        }
    }
    assert!(table::MESSAGES.windows(2).all(|w| w[0].name < w[1].name), "sorted for binary search");
}
