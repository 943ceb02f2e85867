//! Fixtures of the data plane's tests: the Service `default/my-app`, pods of a version, and the
//! Istio objects routing it by subset.

use std::collections::BTreeMap;

use forklane_core::istio::*;
use forklane_sim::traffic::{Pod, Service, ServiceKey, ServicePort};

pub const NS: &str = "default";

pub fn key() -> ServiceKey {
    ServiceKey::new(NS, "my-app")
}

/// `my-app`, selecting `app: my-app`, on port 80 (and `node_port`).
pub fn service(node_port: Option<i32>) -> Service {
    Service {
        namespace: NS.into(),
        name: "my-app".into(),
        selector: BTreeMap::from([("app".into(), "my-app".into())]),
        ports: vec![ServicePort { name: Some("http".into()), port: 80, node_port }],
        service_type: "NodePort".into(),
    }
}

/// `n` pods of `version`, ready or not.
pub fn pods(version: &str, n: usize, ready: bool) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod {
            ready,
            ..Pod::ready(NS, &format!("my-app-{version}-{i}"), &[("app", "my-app"), ("version", version)], version)
        })
        .collect()
}

/// A subset per name, selecting the pods whose `version` is that name.
pub fn destination_rule(subsets: &[&str]) -> DestinationRule {
    let subsets = subsets
        .iter()
        .map(|s| DestinationRuleSubsets {
            name: s.to_string(),
            labels: Some(BTreeMap::from([("version".into(), s.to_string())])),
            ..Default::default()
        })
        .collect();
    DestinationRule {
        metadata: kube::api::ObjectMeta {
            name: Some("my-app".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: DestinationRuleSpec { host: "my-app".into(), subsets: Some(subsets), ..Default::default() },
        status: None,
    }
}

/// A destination: `subset` of my-app, with `weight`.
pub fn to(subset: &str, weight: Option<i32>) -> VirtualServiceHttpRoute {
    VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination {
            host: "my-app".into(),
            subset: Some(subset.into()),
            port: None,
        },
        weight,
        headers: None,
    }
}

pub fn virtual_service(http: Vec<VirtualServiceHttp>) -> VirtualService {
    VirtualService {
        metadata: kube::api::ObjectMeta {
            name: Some("my-app".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: VirtualServiceSpec { hosts: Some(vec!["my-app".into()]), http: Some(http), ..Default::default() },
        status: None,
    }
}
