//! core/v1 and events.k8s.io/v1 Events are one resource in two versions: what kube-rs'
//! `Recorder` writes (events.k8s.io) is read back as core Events, with field selectors on
//! `involvedObject.*`, and shown by real kubectl's `describe`.

use crate::support;
use support::cluster::{cluster, obj, status};
use support::kubectl::{Kubectl, header};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event as EventsV1;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::json;

async fn deployment(client: &Client) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = obj(json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }));
    api.create(&PostParams::default(), &d).await.unwrap()
}

fn promoted() -> Event {
    Event {
        type_: EventType::Normal,
        reason: "Promoted".into(),
        note: Some("all traffic to v2".into()),
        action: "Promote".into(),
        secondary: None,
    }
}

fn recorder(client: &Client) -> Recorder {
    Recorder::new(client.clone(), Reporter { controller: "forklane".into(), instance: Some("forklane-0".into()) })
}

#[tokio::test]
async fn recorder_events_are_core_events() {
    let c = cluster().await;
    let client = c.client();
    let d = deployment(&client).await;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let v1: Api<EventsV1> = Api::namespaced(client.clone(), "default");
    let mut core_watch = core.watch(&WatchParams::default(), "0").await.unwrap().boxed();

    let recorder = recorder(&client);
    let reference = d.object_ref(&());
    recorder.publish(&promoted(), &reference).await.unwrap();
    // A core watch sees the events.k8s.io write, in core form.
    match core_watch.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(e) => {
            assert_eq!((e.reason.as_deref(), e.message.as_deref()), (Some("Promoted"), Some("all traffic to v2")))
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    // The second publish patches the series through events.k8s.io.
    recorder.publish(&promoted(), &reference).await.unwrap();

    let selected = core
        .list(&ListParams::default().fields("involvedObject.name=web,involvedObject.kind=Deployment"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    let e = &selected.items[0];
    assert_eq!(e.involved_object.uid, d.metadata.uid);
    assert_eq!(
        (e.reason.as_deref(), e.message.as_deref(), e.type_.as_deref()),
        (Some("Promoted"), Some("all traffic to v2"), Some("Normal"))
    );
    assert_eq!(
        (e.reporting_component.as_deref(), e.reporting_instance.as_deref(), e.action.as_deref()),
        (Some("forklane"), Some("forklane-0"), Some("Promote"))
    );
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(Some(2)));
    assert!(e.event_time.is_some());
    assert!(core.list(&ListParams::default().fields("involvedObject.name=other")).await.unwrap().items.is_empty());

    // The events.k8s.io view of the same object, with its own field labels.
    let seen = v1.list(&ListParams::default().fields("regarding.name=web,reportingController=forklane")).await.unwrap();
    assert_eq!(seen.items.len(), 1);
    assert_eq!(seen.items[0].metadata.uid, e.metadata.uid);
    assert_eq!(seen.items[0].metadata.resource_version, e.metadata.resource_version, "one object, one resourceVersion");
    assert_eq!(seen.items[0].note.as_deref(), Some("all traffic to v2"));
    let err = status(v1.list(&ListParams::default().fields("involvedObject.name=web")).await.unwrap_err());
    assert_eq!((err.code, err.message.as_str()), (400, "field label not supported: involvedObject.name"));

    // A legacy core Event reads as events.k8s.io with the deprecated* fields; deleting it
    // through either version removes it from both.
    let legacy: CoreEvent = obj(json!({
        "metadata": {"name": "legacy"},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "reason": "Scaled", "message": "scaled to 3", "type": "Normal", "count": 4,
        "source": {"component": "deployment-controller"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:05:00Z",
    }));
    core.create(&PostParams::default(), &legacy).await.unwrap();
    let as_v1 = v1.get("legacy").await.unwrap();
    assert_eq!((as_v1.note.as_deref(), as_v1.deprecated_count), (Some("scaled to 3"), Some(4)));
    assert_eq!(as_v1.deprecated_source.and_then(|s| s.component).as_deref(), Some("deployment-controller"));
    assert_eq!(as_v1.regarding.map(|r| r.name), Some(Some("web".to_string())));
    v1.delete("legacy", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(core.get("legacy").await.unwrap_err()).code, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn kubectl_describe_shows_recorder_events() {
    let c = cluster().await;
    let client = c.client();
    let d = deployment(&client).await;
    recorder(&client).publish(&promoted(), &d.object_ref(&())).await.unwrap();

    let k = Kubectl::new(&c, &std::env::temp_dir());
    let described = k.ok(&["describe", "deployment", "web"]).await;
    let events = described.split("Events:").nth(1).unwrap_or_default();
    let row = events.lines().find(|l| l.contains("Promoted")).unwrap_or_else(|| panic!("no event in:\n{described}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cells[0], cells[1], cells.last().copied()), ("Normal", "Promoted", Some("v2")), "{row}");
    assert!(row.contains("forklane") && row.contains("all traffic to v2"), "{row}");

    for resource in ["events", "events.v1.events.k8s.io"] {
        let table = k.ok(&["get", resource]).await;
        assert_eq!(header(&table), ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("Promoted") && l.contains("deployment/web") && l.contains("all traffic to v2")),
            "{resource}:\n{table}"
        );
    }
    c.shutdown().await;
}
