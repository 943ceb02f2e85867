//! The request audit records what kube-rs clients ask for, in RBAC's terms.

use crate::support;
use support::cluster::{cluster, obj};

use forklane_sim::cluster::{AuditRecord, Cluster, ClusterConfig};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const UA: &str = "forklane-audit-test/1.0";

async fn audited() -> (Cluster, kube::Client) {
    let c = Cluster::start(ClusterConfig { audit: true, ..Default::default() }).await.expect("cluster starts");
    let mut config = c.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(UA)));
    let client = kube::Client::try_from(config).unwrap();
    (c, client)
}

fn triple(group: &str, resource: &str, verb: &str) -> (String, String, String) {
    (group.into(), resource.into(), verb.into())
}

fn deployment() -> Deployment {
    obj(json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }))
}

#[tokio::test]
async fn records_verbs_resources_and_the_user_agent() {
    let (c, client) = audited().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");

    // The watcher lists, then watches: create once the list is done, and wait until the
    // watch delivers the new ConfigMap.
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    while !matches!(events.next().await.unwrap().unwrap(), watcher::Event::InitDone) {}
    cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "cfg"}}))).await.unwrap();
    loop {
        match events.next().await.unwrap().unwrap() {
            watcher::Event::Apply(cm) if cm.metadata.name.as_deref() == Some("cfg") => break,
            _ => {}
        }
    }
    drop(events);
    cms.get("cfg").await.unwrap();
    deploys.create(&PostParams::default(), &deployment()).await.unwrap();
    let status = Patch::Merge(json!({"status": {"observedGeneration": 1}}));
    deploys.patch_status("web", &PatchParams::default(), &status).await.unwrap();
    cms.delete("cfg", &DeleteParams::default()).await.unwrap();
    cms.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    let missing = cms.get("cfg").await;
    assert!(missing.is_err());

    let wanted = [
        triple("", "configmaps", "list"),
        triple("", "configmaps", "watch"),
        triple("", "configmaps", "create"),
        triple("", "configmaps", "get"),
        triple("", "configmaps", "delete"),
        triple("", "configmaps", "deletecollection"),
        triple("apps", "deployments", "create"),
        triple("apps", "deployments/status", "patch"),
    ];
    assert_eq!(c.audit().permissions(), wanted.into_iter().collect());

    let records = c.audit().records();
    assert!(records.iter().all(|r| r.user_agent == UA && r.namespace.as_deref() == Some("default")), "{records:#?}");
    let status_patch = records.iter().find(|r| r.verb == "patch").unwrap();
    let expected = AuditRecord {
        verb: "patch".into(),
        group: "apps".into(),
        version: "v1".into(),
        resource: "deployments".into(),
        subresource: Some("status".into()),
        namespace: Some("default".into()),
        name: Some("web".into()),
        user_agent: UA.into(),
        code: 200,
        annotations: Default::default(),
    };
    assert_eq!(status_patch, &expected);
    // Refused requests are recorded too, with their code: they still needed the permission.
    assert_eq!(records.last().map(|r| (r.verb.as_str(), r.code)), Some(("get", 404)));

    c.audit().clear();
    assert!(c.audit().records().is_empty());
    c.shutdown().await;
}

#[tokio::test]
async fn off_by_default() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    cms.list(&ListParams::default()).await.unwrap();
    assert!(!c.audit().is_enabled());
    assert!(c.audit().records().is_empty());
    c.shutdown().await;
}
