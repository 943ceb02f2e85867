//! `forklane run`: the Experiment controller. `progress` (the state machine) and `crate::plan`
//! (the objects) are pure; `observe`, `apply` and `reconcile` are the thin I/O around them.

pub mod analyst;
pub(crate) mod apply;
pub mod commands;
pub(crate) mod conditions;
pub(crate) mod error;
pub mod leader;
pub(crate) mod observe;
pub(crate) mod progress;
pub(crate) mod reconcile;
pub mod telemetry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};

use crate::analysis::AnalysisError;
use crate::api::Experiment;
use crate::api::Routing;
use crate::clock::Clock;
use crate::istio::{DestinationRule, VirtualService};
use crate::stats::decision::Decision;

pub use error::{Error, Result};
use telemetry::{Heartbeat, Loop, Metrics};

/// The longest one reconcile may run before it is cancelled (and retried by the error policy).
pub(crate) const RECONCILE_LIMIT: Duration = Duration::from_secs(5 * 60);

/// A decision with the samples per arm behind it, or why there is none.
pub type Decided<'a> = Pin<
    Box<dyn Future<Output = std::result::Result<(Decision, Vec<crate::api::ArmSamples>), AnalysisError>> + Send + 'a>,
>;

/// Reads an experiment's metrics and decides.
pub trait Analyst: Send + Sync {
    fn decide<'a>(
        &'a self,
        exp: &'a Experiment,
        mode: Routing,
        window: Duration,
        weights: &'a [(String, i32)],
    ) -> Decided<'a>;
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub clock: Clock,
    pub analyst: Arc<dyn Analyst>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Objects written so far (server-side applies), for tests and demos.
    pub writes: AtomicU64,
}

impl Context {
    pub fn new(client: Client, clock: Clock, analyst: Arc<dyn Analyst>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: "forklane".into(), instance: std::env::var("POD_NAME").ok() };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock,
            analyst,
            metrics,
            writes: AtomicU64::new(0),
        }
    }

    fn count_writes(&self, n: u32) {
        self.writes.fetch_add(u64::from(n), Ordering::Relaxed);
    }
}

/// Which namespaces to watch, and how.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub namespace: Option<String>,
    /// Seconds after which the API server ends each watch (the watcher then resumes it); `None`:
    /// the server's default (290 s). Must be shorter than the client's read timeout, else a quiet
    /// watch times out on the client side.
    pub watch_timeout: Option<u32>,
}

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Experiments in the same namespace that name this object (a Deployment or Service of theirs).
fn naming(
    store: &kube::runtime::reflector::Store<Experiment>,
    ns: Option<String>,
    name: &str,
    field: fn(&Experiment, &str) -> bool,
) -> Vec<ObjectRef<Experiment>> {
    store
        .state()
        .iter()
        .filter(|e| e.namespace() == ns && field(e, name))
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}

/// Runs the controller until `shutdown` resolves. With Istio installed it also watches the
/// routing objects it writes.
pub async fn run_controller(
    ctx: Arc<Context>,
    scope: Scope,
    istio: bool,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let experiments: Api<Experiment> = api(&client, &scope);
    let config = match scope.watch_timeout {
        Some(seconds) => watcher::Config::default().timeout(seconds),
        None => watcher::Config::default(),
    };
    let controller = Controller::new(experiments, config.clone());
    let store = controller.store();
    let by_deployment = store.clone();
    let by_service = store.clone();
    let mut controller = controller
        .watches(api::<Deployment>(&client, &scope), config.clone(), move |d| {
            naming(&by_deployment, d.namespace(), &d.name_any(), |e, n| {
                e.spec.arms.iter().any(|a| a.deployment.as_deref() == Some(n))
            })
        })
        .watches(api::<Service>(&client, &scope), config.clone(), move |s| {
            naming(&by_service, s.namespace(), &s.name_any(), |e, n| e.spec.service.name == n)
        });
    if istio {
        controller = controller
            .owns(api::<VirtualService>(&client, &scope), config.clone())
            .owns(api::<DestinationRule>(&client, &scope), config);
    }
    let metrics = ctx.metrics.clone();
    let mut heartbeat = Heartbeat::new(&metrics, Loop::Controller);
    // Reconciles run inside this stream's poll: while one blocks the thread, the heartbeat stops.
    let results = controller.graceful_shutdown_on(shutdown).run(
        |exp, ctx| within(RECONCILE_LIMIT, reconcile::reconcile(exp, ctx)),
        reconcile::error_policy,
        ctx,
    );
    tokio::pin!(results);
    loop {
        tokio::select! {
            result = results.next() => match result {
                Some(Err(e)) => tracing::debug!(error = %e, "controller stream"),
                Some(Ok(_)) => {}
                None => return,
            },
            () = heartbeat.tick() => {}
        }
    }
}

/// `reconcile`, cancelled with [`Error::Timeout`] once it has run for `limit`.
async fn within(limit: Duration, reconcile: impl Future<Output = Result<Action>>) -> Result<Action> {
    tokio::time::timeout(limit, reconcile).await.unwrap_or(Err(Error::Timeout(limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reconcile_that_overruns_its_limit_is_cancelled_with_an_error() {
        let limit = Duration::from_millis(20);
        let started = std::time::Instant::now();
        let hung = within(limit, std::future::pending()).await;
        assert!(matches!(hung, Err(Error::Timeout(l)) if l == limit), "{hung:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let done = within(limit, async { Ok(Action::await_change()) }).await;
        assert_eq!(done.unwrap(), Action::await_change());
    }
}
