//! One experiment as the views show it: the Experiment (its status carries the history of
//! looks), its arms' Deployments and its Events, read once.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use forklane_core::api::Experiment;

/// An experiment and what its views need besides it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub experiment: Experiment,
    /// The Deployment of each arm that names one, by arm name (absent: not found).
    pub deployments: BTreeMap<String, Deployment>,
    /// The experiment's Events, oldest first.
    pub events: Vec<Event>,
}

impl Observed {
    /// The experiment alone (no Deployments, no Events): for tests and offline rendering.
    pub fn of(experiment: Experiment) -> Self {
        Self { experiment, deployments: BTreeMap::new(), events: vec![] }
    }

    pub fn name(&self) -> String {
        self.experiment.name_any()
    }

    pub fn namespace(&self) -> String {
        self.experiment.namespace().unwrap_or_default()
    }
}

/// Reads `namespace/name` with its arms' Deployments and its Events.
pub async fn observe(client: &Client, namespace: &str, name: &str) -> Result<Observed, kube::Error> {
    let experiment = Api::<Experiment>::namespaced(client.clone(), namespace).get(name).await?;
    with_surroundings(client, experiment).await
}

/// Every experiment of `namespace` (every namespace when `None`), each with its Deployments and
/// Events, sorted by namespace and name.
pub async fn observe_all(client: &Client, namespace: Option<&str>) -> Result<Vec<Observed>, kube::Error> {
    let api: Api<Experiment> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut experiments = api.list(&ListParams::default()).await?.items;
    experiments.sort_by_key(|e| (e.namespace(), e.name_any()));
    let mut observed = Vec::with_capacity(experiments.len());
    for experiment in experiments {
        observed.push(with_surroundings(client, experiment).await?);
    }
    Ok(observed)
}

async fn with_surroundings(client: &Client, experiment: Experiment) -> Result<Observed, kube::Error> {
    let namespace = experiment.namespace().unwrap_or_default();
    let deployments_api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let mut deployments = BTreeMap::new();
    for arm in &experiment.spec.arms {
        let Some(name) = &arm.deployment else { continue };
        match deployments_api.get_opt(name).await? {
            Some(d) => {
                deployments.insert(arm.name.clone(), d);
            }
            None => continue,
        }
    }
    let events_api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("involvedObject.kind=Experiment,involvedObject.name={}", experiment.name_any());
    let mut events = events_api.list(&ListParams::default().fields(&selector)).await?.items;
    events.sort_by_key(event_time);
    Ok(Observed { experiment, deployments, events })
}

/// When an event happened, by the API server's clock: when it was stored (`creationTimestamp`),
/// or for a repeated event its last occurrence. The reporter's own `eventTime` comes last: it is
/// the client's clock, which may differ (the sandbox runs its API server on a sped-up clock).
pub fn event_time(event: &Event) -> Option<jiff::Timestamp> {
    let repeated = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().filter(|_| event.count.is_some_and(|c| c > 1)).map(|t| t.0));
    repeated
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
}
