//! Watches against the in-process API server: kube-rs watcher + reflector through rapid
//! updates and a forced 410 restart, streaming lists, bookmarks, timeouts, a Controller.

use crate::support;
use support::cluster::{cluster, obj};

use forklane_sim::cluster::{ClusterConfig, FaultSettings, Gvr};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// name -> (resourceVersion, data.n) of every ConfigMap in `default`, as the server has them.
async fn server_state(api: &Api<ConfigMap>) -> BTreeMap<String, (String, String)> {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items.into_iter().map(|cm| key(&cm)).collect()
}

fn key(cm: &ConfigMap) -> (String, (String, String)) {
    let n = cm.data.as_ref().and_then(|d| d.get("n").cloned()).unwrap_or_default();
    (cm.metadata.name.clone().unwrap(), (cm.metadata.resource_version.clone().unwrap(), n))
}

async fn wait_in_sync(reader: &reflector::Store<ConfigMap>, api: &Api<ConfigMap>) {
    let mut last = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..200 {
        let want = server_state(api).await;
        let have: BTreeMap<_, _> = reader.state().iter().map(|cm| key(cm)).collect();
        if want == have {
            return;
        }
        last = (want, have);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("reflector out of sync:\nserver {:?}\nreflector {:?}", last.0, last.1);
}

#[tokio::test]
async fn reflector_stays_in_sync_through_rapid_updates_and_a_forced_410() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    let (reader, writer) = reflector::store();
    let saw_gone = Arc::new(AtomicBool::new(false));
    let gone = saw_gone.clone();
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .inspect_err(move |e| {
            if let watcher::Error::WatchError(s) = e
                && s.code == 410
            {
                gone.store(true, Ordering::SeqCst);
            }
        })
        .reflect(writer);
    let task = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await.unwrap();

    for i in 0..10 {
        api.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("cm-{i}")}, "data": {"n": "0"}})))
            .await
            .unwrap();
    }
    // 1,000 rapid updates, ten writers at once.
    futures::stream::iter(0..1000)
        .for_each_concurrent(10, |i| {
            let api = api.clone();
            async move {
                let patch = Patch::Merge(json!({"data": {"n": i.to_string()}}));
                api.patch(&format!("cm-{}", i % 10), &PatchParams::default(), &patch).await.unwrap();
            }
        })
        .await;
    wait_in_sync(&reader, &api).await;

    // Force a restart: hold responses back, cut the watch, change and delete objects while
    // the watcher is away, then compact history so its resume version is gone.
    c.faults().set(FaultSettings { delay_ms: 300, ..Default::default() }).unwrap();
    c.faults().cut_watches();
    let gvr = Gvr::new("", "v1", "configmaps");
    let store = c.store();
    for i in 0..5 {
        store
            .patch(
                &gvr,
                Some("default"),
                &format!("cm-{i}"),
                forklane_sim::cluster::store::Patch::Merge(json!({"data": {"n": "away"}})),
                &Default::default(),
            )
            .unwrap();
    }
    store.delete(&gvr, Some("default"), "cm-9", &Default::default()).unwrap();
    store.compact();
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.faults().clear();
    wait_in_sync(&reader, &api).await;
    assert!(saw_gone.load(Ordering::SeqCst), "the watcher resumed without a 410");
    assert_eq!(reader.state().len(), 9);

    task.abort();
    c.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_syncs() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("s-{i}")}, "data": {"n": "1"}})))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store();
    let stream = watcher(api.clone(), watcher::Config::default().streaming_lists()).reflect(writer);
    let task = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 5);
    api.patch("s-0", &PatchParams::default(), &Patch::Merge(json!({"data": {"n": "2"}}))).await.unwrap();
    wait_in_sync(&reader, &api).await;
    task.abort();
    c.shutdown().await;
}

#[tokio::test]
async fn too_old_resource_version_gets_410_and_bookmarks_and_timeouts_work() {
    let c = forklane_sim::cluster::Cluster::start(ClusterConfig {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "a"}}))).await.unwrap();
    c.store().compact();
    let mut old = api.watch(&WatchParams::default(), "1").await.unwrap().boxed();
    match old.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let started = std::time::Instant::now();
    let events: Vec<_> = api
        .watch(&WatchParams { bookmarks: true, ..WatchParams::default() }.timeout(1), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "stream ended early");
    assert!(started.elapsed() < Duration::from_secs(5), "timeoutSeconds ignored");
    assert!(events.iter().any(|e| matches!(e, WatchEvent::Bookmark(_))), "{events:?}");
    c.shutdown().await;
}

#[tokio::test]
async fn label_selector_watch_sees_objects_enter_and_leave() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "x", "labels": {"on": "no"}}}))).await.unwrap();
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut w = api.watch(&WatchParams::default().labels("on=yes"), &rv).await.unwrap().boxed();
    api.patch("x", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"on": "yes"}}})))
        .await
        .unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"on": "no"}}})))
        .await
        .unwrap();
    assert!(matches!(w.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
    assert!(matches!(w.try_next().await.unwrap(), Some(WatchEvent::Deleted(_))));
    c.shutdown().await;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

#[tokio::test]
async fn a_controller_runs_against_the_server() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("c-{i}")}}))).await.unwrap();
    }
    let reconciled = Arc::new(AtomicUsize::new(0));
    let ctx = Arc::new((api.clone(), reconciled.clone()));
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            |cm: Arc<ConfigMap>, ctx: Arc<(Api<ConfigMap>, Arc<AtomicUsize>)>| async move {
                let already = cm.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("reconciled"));
                if !already {
                    let patch = Patch::Merge(json!({"metadata": {"annotations": {"reconciled": "yes"}}}));
                    ctx.0.patch(cm.metadata.name.as_deref().unwrap(), &PatchParams::default(), &patch).await?;
                    ctx.1.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, ReconcileError>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            ctx,
        )
        .for_each(|_| futures::future::ready(()));
    let task = tokio::spawn(controller);
    for _ in 0..100 {
        let list = api.list(&ListParams::default()).await.unwrap();
        if list.items.iter().all(|cm| cm.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("reconciled"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reconciled.load(Ordering::SeqCst), 5);
    task.abort();
    c.shutdown().await;
}
