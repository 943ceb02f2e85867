//! `observe` over caches filled as the watches would fill them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use serde_json::json;

use super::{mode, observe, uncached_crds};
use crate::api::{GatewayApiOptions, ParentRef, Provider, Routing};
use crate::controller::world::tests::{Filled, caches, list};
use crate::controller::world::{HTTPROUTE_CRD, ISTIO_VIRTUAL_SERVICE_CRD};
use crate::fixtures::ExperimentBuilder;
use crate::gateway::HttpRoute;

fn crd(name: &str) -> PartialObjectMeta<CustomResourceDefinition> {
    let mut crd = PartialObjectMeta::<CustomResourceDefinition>::default();
    crd.metadata.name = Some(name.into());
    crd
}

/// Caches of a cluster with the Gateway API installed.
fn with_gateway_api() -> Filled {
    let mut c = caches();
    list(&mut c.crds, vec![crd(HTTPROUTE_CRD)]);
    c
}

fn route(value: serde_json::Value) -> HttpRoute {
    serde_json::from_value(value).unwrap()
}

/// A Service Forklane wrote for `arm` of an experiment on `my-app`, owned by `owner` if any.
fn arm_service(name: &str, arm: &str, owner: Option<&str>) -> Service {
    cohort_service(name, arm, None, owner)
}

fn cohort_service(name: &str, arm: &str, cohort: Option<&str>, owner: Option<&str>) -> Service {
    let mut labels = json!({"app.kubernetes.io/managed-by": "forklane", "forklane.io/arm": arm});
    if let Some(cohort) = cohort {
        labels["forklane.io/cohort"] = cohort.into();
    }
    let owners: Vec<serde_json::Value> = owner
        .iter()
        .map(|uid| json!({"apiVersion": "forklane.io/v1alpha1", "kind": "Experiment", "name": "x", "uid": uid}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "shop", "ownerReferences": owners,
            "labels": labels
        },
        "spec": {"selector": {"app": "my-app"}}
    }))
    .unwrap()
}

#[test]
fn auto_prefers_the_gateway_api_where_the_service_already_uses_it_else_istio() {
    let crd = |name: &str| {
        let mut crd = PartialObjectMeta::<CustomResourceDefinition>::default();
        crd.metadata.name = Some(name.into());
        crd
    };
    let mut c = caches();
    list(&mut c.crds, vec![crd(ISTIO_VIRTUAL_SERVICE_CRD), crd(HTTPROUTE_CRD)]);
    let mut exp = crate::fixtures::ExperimentBuilder::canary("c").build();
    exp.metadata.namespace = Some("shop".into());
    let service = exp.spec.service.name.clone();
    assert_eq!(mode(&c.world, &exp), Routing::Istio, "both installed, neither in use: Istio");
    let mut attached: HttpRoute = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "theirs", "namespace": "shop"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": service}]}
    }))
    .unwrap();
    list(&mut c.http_routes, vec![attached.clone()]);
    assert_eq!(mode(&c.world, &exp), Routing::GatewayApi, "an HTTPRoute on the Service");
    attached.spec.parent_refs.as_mut().unwrap()[0].name = "another".into();
    list(&mut c.http_routes, vec![attached]);
    assert_eq!(mode(&c.world, &exp), Routing::Istio, "a route on another Service does not count");
    let mut ns = Namespace::default();
    ns.metadata.name = Some("shop".into());
    ns.metadata.labels = Some(BTreeMap::from([("istio.io/use-waypoint".to_string(), "waypoint".to_string())]));
    list(&mut c.namespaces, vec![ns]);
    assert_eq!(mode(&c.world, &exp), Routing::GatewayApi, "a waypoint for the namespace");
    let mut recorded = exp.clone();
    recorded.status = Some(crate::api::ExperimentStatus { mesh: Some(Routing::Istio), ..Default::default() });
    assert_eq!(mode(&c.world, &recorded), Routing::Istio, "chosen once, at the start, for good");
}

#[test]
fn the_arm_services_a_deleted_experiment_left_for_other_arms_are_leftovers_its_own_arms_taken_over() {
    let mut c = with_gateway_api();
    let exp = ExperimentBuilder::canary("c").namespace("shop").provider(Provider::GatewayApi).build();
    let mut theirs = arm_service("my-app-blue", "blue", None);
    theirs.metadata.labels.as_mut().unwrap().remove("app.kubernetes.io/managed-by");
    list(
        &mut c.services,
        vec![
            arm_service("my-app-green", "green", None),
            arm_service("my-app-v2", "v2", None),
            arm_service("my-app-canary", "canary", Some("another-experiment")),
            arm_service("other-green", "green", None),
            arm_service("my-app-eu-v1", "v1", None),
            cohort_service("my-app-v2-returning", "v2", Some("returning"), None),
            cohort_service("my-app-v1-targeted", "v1", Some("returning"), None),
            theirs,
        ],
    );
    let obs = observe(&c.world, &exp, "shop");
    assert_eq!(
        obs.leftovers.services,
        ["my-app-green", "my-app-v2-returning"],
        "released, for my-app, of an arm or a cohort this experiment lacks (a canary has no sticky pins)"
    );
    assert_eq!(obs.live.arm_services.keys().collect::<Vec<_>>(), ["my-app-v2"], "its own arm's Service is taken over");
    assert!(obs.conflicts.is_empty(), "{:?}", obs.conflicts);
}

#[test]
fn on_a_shared_gateway_another_route_to_the_service_conflicts_and_routes_to_other_services_do_not() {
    let mut c = with_gateway_api();
    let mut exp = ExperimentBuilder::canary("c").namespace("shop").provider(Provider::GatewayApi).build();
    let parent = ParentRef {
        group: None,
        kind: None,
        name: "public".into(),
        namespace: Some("infra".into()),
        section_name: None,
        port: None,
    };
    exp.spec.routing.get_or_insert_with(Default::default).gateway_api =
        Some(GatewayApiOptions { parent_refs: vec![parent], hostnames: vec!["shop.example.com".into()] });
    let on = |name: &str, gateway: &str, gateway_ns: &str, backend: &str| {
        route(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "parentRefs": [{"name": gateway, "namespace": gateway_ns}],
                "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]
            }
        }))
    };
    list(
        &mut c.http_routes,
        vec![
            on("theirs", "public", "infra", "my-app"),
            on("same-gateway-other-service", "public", "infra", "payments"),
            on("other-gateway", "internal", "infra", "my-app"),
            on("same-name-other-namespace", "public", "shop", "my-app"),
        ],
    );
    let obs = observe(&c.world, &exp, "shop");
    assert_eq!(obs.mode, Routing::GatewayApi);
    assert_eq!(obs.conflicts, ["HTTPRoute shop/theirs"]);
    assert!(obs.leftovers.is_empty());
}

#[test]
fn while_auto_has_not_chosen_the_crds_that_would_change_its_choice_and_are_not_cached_are_asked_for() {
    let mut c = caches();
    list(&mut c.crds, vec![]);
    let both = [ISTIO_VIRTUAL_SERVICE_CRD, HTTPROUTE_CRD];
    assert_eq!(uncached_crds(&c.world, Routing::Native), both, "nothing cached: either would change native");
    list(&mut c.crds, vec![crd(ISTIO_VIRTUAL_SERVICE_CRD)]);
    assert_eq!(uncached_crds(&c.world, Routing::Istio), [HTTPROUTE_CRD], "the Gateway API could still win over Istio");
    list(&mut c.crds, vec![crd(ISTIO_VIRTUAL_SERVICE_CRD), crd(HTTPROUTE_CRD)]);
    assert!(uncached_crds(&c.world, Routing::Istio).is_empty(), "both cached: the caches decide");
    list(&mut c.crds, vec![crd(HTTPROUTE_CRD)]);
    assert!(uncached_crds(&c.world, Routing::GatewayApi).is_empty(), "the Gateway API is auto's first choice");
    assert_eq!(uncached_crds(&c.world, Routing::Native), [ISTIO_VIRTUAL_SERVICE_CRD]);
}
