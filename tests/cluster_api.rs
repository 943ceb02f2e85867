//! kube-rs against the in-process API server: CRUD, patches, server-side apply, subresources,
//! finalizers, garbage collection, custom resources.

use crate::support;
use support::cluster::{cluster, dynamic, obj, status, widget_crd};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use std::time::Duration;

fn deployment(name: &str, replicas: i32) -> Deployment {
    obj(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
            },
        },
    }))
}

async fn eventually<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, f: F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn crud_on_builtins_with_defaults_and_allocation() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    let cm = cms
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    assert!(cm.metadata.uid.is_some() && cm.metadata.creation_timestamp.is_some());
    let mut got = cms.get("cfg").await.unwrap();
    got.data.as_mut().unwrap().insert("b".into(), "2".into());
    let replaced = cms.replace("cfg", &PostParams::default(), &got).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, cm.metadata.resource_version);
    assert_eq!(cms.list(&ListParams::default()).await.unwrap().items.len(), 1);
    cms.delete("cfg", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(cms.get("cfg").await.unwrap_err()).code, 404);

    // generateName
    let generated =
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"generateName": "gen-"}}))).await.unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Deployment defaults and generation
    let deploys: Api<Deployment> = Api::namespaced(c.client(), "default");
    let d = deploys.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.template.spec.as_ref().unwrap().containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(d.metadata.generation, Some(1));
    let relabeled = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(relabeled.metadata.generation, Some(1), "metadata changes do not bump generation");
    let rescaled =
        deploys.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    assert_eq!(rescaled.metadata.generation, Some(2));

    // Service allocation
    let svcs: Api<Service> = Api::namespaced(c.client(), "default");
    let svc: Service = obj(
        json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    let svc = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = svc.spec.unwrap();
    assert!(spec.cluster_ip.as_deref().unwrap().starts_with("10."));
    let port = &spec.ports.unwrap()[0];
    assert!((30000..=32767).contains(&port.node_port.unwrap()));
    assert_eq!(port.protocol.as_deref(), Some("TCP"));

    // Objects in a missing namespace are refused.
    let missing: Api<ConfigMap> = Api::namespaced(c.client(), "nope");
    let s = status(missing.create(&PostParams::default(), &obj(json!({"metadata": {"name": "x"}}))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "namespaces \"nope\" not found");
    c.shutdown().await;
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    let first = cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "cfg"}}))).await.unwrap();
    let mut a = first.clone();
    a.data = Some([("k".to_string(), "a".to_string())].into());
    cms.replace("cfg", &PostParams::default(), &a).await.unwrap();
    let mut b = first.clone();
    b.data = Some([("k".to_string(), "b".to_string())].into());
    let s = status(cms.replace("cfg", &PostParams::default(), &b).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("the object has been modified"), "{}", s.message);
    // As in etcd3's store, a create carrying a resourceVersion is refused before anything else.
    let s = status(cms.create(&PostParams::default(), &first).await.unwrap_err());
    assert_eq!(
        (s.code, s.message.as_str()),
        (500, "Internal error occurred: resourceVersion should not be set on objects to be created")
    );
    let mut again = first.clone();
    again.metadata.resource_version = None;
    assert_eq!(status(cms.create(&PostParams::default(), &again).await.unwrap_err()).reason, "AlreadyExists");
    c.shutdown().await;
}

#[tokio::test]
async fn selectors_and_pagination() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"tier": tier}}})),
        )
        .await
        .unwrap();
    }
    assert_eq!(cms.list(&ListParams::default().labels("tier=even")).await.unwrap().items.len(), 13);
    assert_eq!(cms.list(&ListParams::default().labels("tier in (odd),tier!=even")).await.unwrap().items.len(), 12);
    assert_eq!(cms.list(&ListParams::default().fields("metadata.name=cm-03")).await.unwrap().items.len(), 1);
    let s = status(cms.list(&ListParams::default().fields("data.x=1")).await.unwrap_err());
    assert_eq!((s.code, s.message.as_str()), (400, "field label not supported: data.x"));

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    loop {
        let page = cms.list(&lp).await.unwrap();
        names.extend(page.items.iter().map(|i| i.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
        // Pages come from one snapshot: a write in between is not seen.
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("late-{}", names.len())}})))
            .await
            .unwrap();
    }
    assert_eq!(names.len(), 25);
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    c.shutdown().await;
}

#[tokio::test]
async fn custom_resources_are_served_validated_pruned_and_defaulted() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    let crd = crds.create(&PostParams::default(), &obj(widget_crd())).await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"));

    let discovery = kube::Discovery::new(c.client()).run().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "example.com"));

    let widgets = dynamic(c.client(), "example.com", "v1", "Widget", "widgets", Some("default"));
    let w: DynamicObject = obj(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3, "bogus": true}}),
    );
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["spec"], json!({"size": 3, "color": "blue"}), "defaulted and pruned");

    let bad: DynamicObject = obj(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": 0, "color": "green"}}),
    );
    let s = status(widgets.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s.details.unwrap().causes.iter().map(|c| c.field.clone()).collect();
    assert!(fields.contains(&"spec.size".to_string()) && fields.contains(&"spec.color".to_string()), "{fields:?}");

    let cel: DynamicObject = obj(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w3"}, "spec": {"size": 500}}),
    );
    let s = status(widgets.create(&PostParams::default(), &cel).await.unwrap_err());
    assert!(s.message.contains("big widgets must be red"), "{}", s.message);

    // Strategic merge patch is refused on custom resources (415), merge patch works.
    let smp = widgets
        .patch("w1", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"size": 4}})))
        .await
        .unwrap_err();
    assert_eq!(status(smp).code, 415);
    let merged =
        widgets.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}}))).await.unwrap();
    assert_eq!(merged.data["spec"]["size"], 4);

    // Deleting the CRD removes its objects and stops serving the resource.
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    eventually("CRD removal", || async { status_code(crds.get("widgets.example.com").await) == Some(404) }).await;
    assert_eq!(status(widgets.list(&ListParams::default()).await.unwrap_err()).code, 404);
    c.shutdown().await;
}

fn status_code<T>(r: kube::Result<T>) -> Option<u16> {
    match r {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some(s.code),
        Err(_) => None,
    }
}

#[tokio::test]
async fn every_patch_type() {
    let c = cluster().await;
    let deploys: Api<Deployment> = Api::namespaced(c.client(), "default");
    deploys.create(&PostParams::default(), &deployment("web", 1)).await.unwrap();
    let pp = PatchParams::default();

    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}])).unwrap();
    let d = deploys.patch("web", &pp, &Patch::<()>::Json(json_patch)).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));

    let d = deploys.patch("web", &pp, &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}}))).await.unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["a"], "b");

    // Strategic merge: containers merge by name instead of being replaced.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1"}]}}}});
    let d = deploys.patch("web", &pp, &Patch::Strategic(smp)).await.unwrap();
    let names: Vec<String> = d.spec.unwrap().template.spec.unwrap().containers.into_iter().map(|c| c.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"minReadySeconds": 5}});
    let d = deploys.patch("web", &PatchParams::apply("tester"), &Patch::Apply(applied)).await.unwrap();
    assert_eq!(d.spec.unwrap().min_ready_seconds, Some(5));
    c.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_removes_dropped_fields_and_reports_conflicts() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    let cfg = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data});
    let alice = PatchParams::apply("alice");
    cms.patch("cfg", &alice, &Patch::Apply(cfg(json!({"a": "1", "b": "2"})))).await.unwrap();
    let bob = PatchParams::apply("bob");
    cms.patch("cfg", &bob, &Patch::Apply(cfg(json!({"c": "3"})))).await.unwrap();

    // alice stops applying b: it is removed; c (bob's) stays.
    let now = cms.patch("cfg", &alice, &Patch::Apply(cfg(json!({"a": "1"})))).await.unwrap();
    let data = now.data.unwrap();
    assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["a", "c"]);

    // bob changing alice's field conflicts, unless forced.
    let s = status(cms.patch("cfg", &bob, &Patch::Apply(cfg(json!({"a": "9", "c": "3"})))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("conflict with \"alice\""), "{}", s.message);
    let forced = cms.patch("cfg", &bob.clone().force(), &Patch::Apply(cfg(json!({"a": "9", "c": "3"})))).await.unwrap();
    assert_eq!(forced.data.unwrap()["a"], "9");
    let managers: Vec<String> = forced.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"bob".to_string()));
    c.shutdown().await;
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.create(&PostParams::default(), &obj(widget_crd())).await.unwrap();
    let widgets = dynamic(c.client(), "example.com", "v1", "Widget", "widgets", Some("default"));
    let w: DynamicObject = obj(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "replicas": 1}, "status": {"phase": "ignored"}}),
    );
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert!(created.data.get("status").is_none(), "status is ignored on create");
    assert_eq!(created.metadata.generation, Some(1));

    // status writes change only status and leave generation alone
    let st = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 50}, "status": {"phase": "Ready", "replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!((st.data["spec"]["size"].clone(), st.data["status"]["phase"].clone()), (json!(1), json!("Ready")));
    assert_eq!(st.metadata.generation, Some(1));
    // main-resource writes ignore status and bump generation on spec changes
    let main = widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "Lost"}})))
        .await
        .unwrap();
    assert_eq!((main.data["status"]["phase"].clone(), main.metadata.generation), (json!("Ready"), Some(2)));

    // server-side apply through status: the applier's entry is a `status` one, and a field it
    // stops applying there is removed (a controller clearing a status field)
    let applied = |status: Value| {
        let body =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": status});
        Patch::Apply(body)
    };
    let ctl = PatchParams::apply("ctl").force();
    widgets.patch_status("w", &ctl, &applied(json!({"phase": "Waiting", "since": "t1"}))).await.unwrap();
    let st = widgets.patch_status("w", &ctl, &applied(json!({"phase": "Done"}))).await.unwrap();
    assert_eq!(
        st.data["status"],
        json!({"phase": "Done", "replicas": 1}),
        "since is gone; the merge patch's replicas stay"
    );
    let entry = st.metadata.managed_fields.unwrap().into_iter().find(|m| m.manager.as_deref() == Some("ctl")).unwrap();
    assert_eq!((entry.operation.as_deref(), entry.subresource.as_deref()), (Some("Apply"), Some("status")));

    let scale = widgets.get_scale("w").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    widgets.patch_scale("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.unwrap();
    assert_eq!(widgets.get("w").await.unwrap().data["spec"]["replicas"], 5);

    let deploys: Api<Deployment> = Api::namespaced(c.client(), "default");
    deploys.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 7}}))).await.unwrap();
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(7));
    c.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_objects_until_removed() {
    let c = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})))
        .await
        .unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    let s = status(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "new"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s.code, 422);
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(status(cms.get("held").await.unwrap_err()).code, 404);
    c.shutdown().await;
}

async fn owned_replica_set(c: &forklane_sim::cluster::Cluster, owner: &Deployment, name: &str) -> ReplicaSet {
    let rss: Api<ReplicaSet> = Api::namespaced(c.client(), "default");
    let mut rs: ReplicaSet = obj(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
    }));
    rs.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: owner.metadata.name.clone().unwrap(),
        uid: owner.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    rss.create(&PostParams::default(), &rs).await.unwrap()
}

#[tokio::test]
async fn cascading_delete_background_foreground_orphan() {
    let c = cluster().await;
    let deploys: Api<Deployment> = Api::namespaced(c.client(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client(), "default");
    for (policy, dp) in [
        ("background", DeleteParams::background()),
        ("foreground", DeleteParams::foreground()),
        ("orphan", DeleteParams::orphan()),
    ] {
        let d = deploys.create(&PostParams::default(), &deployment(&format!("web-{policy}"), 1)).await.unwrap();
        let rs_name = format!("rs-{policy}");
        owned_replica_set(&c, &d, &rs_name).await;
        deploys.delete(d.metadata.name.as_deref().unwrap(), &dp).await.unwrap();
        let name = d.metadata.name.clone().unwrap();
        eventually("owner gone", || async { status_code(deploys.get(&name).await) == Some(404) }).await;
        if policy == "orphan" {
            let rs = rss.get(&rs_name).await.unwrap();
            assert!(
                rs.metadata.owner_references.unwrap_or_default().is_empty(),
                "orphaned dependent loses its owner reference"
            );
        } else {
            eventually("dependent collected", || async { status_code(rss.get(&rs_name).await) == Some(404) }).await;
        }
    }
    c.shutdown().await;
}

#[tokio::test]
async fn deletecollection_and_namespace_deletion() {
    let c = cluster().await;
    let nss: Api<Namespace> = Api::all(c.client());
    nss.create(&PostParams::default(), &obj(json!({"metadata": {"name": "team"}}))).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "team");
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": format!("c{i}"), "labels": {"drop": (i < 3).to_string()}}})),
        )
        .await
        .unwrap();
    }
    cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("drop=true")).await.unwrap();
    assert_eq!(cms.list(&ListParams::default()).await.unwrap().items.len(), 2);

    nss.delete("team", &DeleteParams::default()).await.unwrap();
    let s = status(cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": "late"}}))).await.unwrap_err());
    assert!(s.code == 403 || s.code == 404, "{s:?}");
    eventually("namespace removal", || async { status_code(nss.get("team").await) == Some(404) }).await;
    assert_eq!(status(nss.delete("default", &DeleteParams::default()).await.unwrap_err()).code, 403);
    c.shutdown().await;
}

#[tokio::test]
async fn leases_and_events() {
    let c = cluster().await;
    let leases: Api<Lease> = Api::namespaced(c.client(), "default");
    let lease: Lease =
        obj(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}));
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let got = leases
        .patch("leader", &PatchParams::default(), &Patch::Merge(json!({"spec": {"holderIdentity": "b"}})))
        .await
        .unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("b"));

    let events: Api<Event> = Api::namespaced(c.client(), "default");
    let ev: Event = obj(json!({
        "metadata": {"name": "web.1"}, "reason": "Scaled", "message": "scaled up", "type": "Normal",
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
    }));
    events.create(&PostParams::default(), &ev).await.unwrap();
    let found = events.list(&ListParams::default().fields("involvedObject.name=web,reason=Scaled")).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let new_events = dynamic(c.client(), "events.k8s.io", "v1", "Event", "events", Some("default"));
    let e2: DynamicObject = obj(
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.2"}, "reason": "Started", "action": "Start", "note": "n", "type": "Normal", "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "x", "reportingInstance": "y", "regarding": {"kind": "Deployment", "name": "web"}}),
    );
    new_events.create(&PostParams::default(), &e2).await.unwrap();
    assert!(new_events.get("web.2").await.is_ok());
    c.shutdown().await;
}
