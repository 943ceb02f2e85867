//! `forklane run`: the Experiment controller. `world` keeps watch-fed caches of everything a
//! reconcile reads; `observe` reads them (no API call); `decide` (with `crate::plan`, `health`,
//! `apply::gate` and `progress`) is the pure reconcile; `reconcile` is the thin I/O around it.

pub mod analyst;
pub(crate) mod apply;
pub mod commands;
pub(crate) mod conditions;
pub(crate) mod decide;
pub(crate) mod distribution;
pub(crate) mod election;
pub(crate) mod error;
pub mod fence;
pub(crate) mod health;
pub mod history;
pub(crate) mod lanes;
pub mod leader;
pub(crate) mod members;
pub(crate) mod observe;
pub(crate) mod policies;
pub(crate) mod progress;
pub(crate) mod reconcile;
pub mod replay;
pub(crate) mod settle;
pub mod shards;
pub mod telemetry;
pub mod throttle;
pub(crate) mod world;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use crate::analysis::AnalysisError;
use crate::api::Experiment;
use crate::api::Routing;
use crate::clock::Clock;
use crate::stats::decision::Decision;

pub use error::{Error, Result};
use shards::Shard;
use telemetry::{Heartbeat, Loop, Metrics};
use world::{World, triggers};

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
#[derive(Clone, Debug)]
pub struct Scope {
    pub namespace: Option<String>,
    /// Seconds after which the API server ends each watch (the watcher then resumes it); `None`:
    /// the server's default (290 s). Must be shorter than the client's read timeout, else a quiet
    /// watch times out on the client side.
    pub watch_timeout: Option<u32>,
    /// Reconciles running at once (`--max-concurrent-reconciles`); see [`lanes`].
    pub concurrency: usize,
}

/// Reconciles at once by default: they mostly wait on the API server or on a metric query (up to
/// its 10 s timeout), so a few dozen keep two cores busy without letting one slow source stall
/// every experiment.
pub const DEFAULT_CONCURRENCY: usize = 32;

impl Default for Scope {
    fn default() -> Self {
        Scope { namespace: None, watch_timeout: None, concurrency: DEFAULT_CONCURRENCY }
    }
}

/// What every reconcile of one running controller shares: the shards and the caches.
pub(crate) struct Shared {
    /// This replica's shards, indexed by [`shards::shard_of`].
    pub shards: Vec<Shard>,
    pub world: World,
    /// The bound on reconciles at once, due experiments first.
    pub lanes: Arc<lanes::Lanes>,
    /// When each experiment's next timer falls due (real time), to give it priority then.
    pub due: std::sync::Mutex<std::collections::HashMap<ObjectRef<Experiment>, std::time::Instant>>,
    /// Failed reconciles in a row per experiment: for the backoff, and to report each error once.
    pub failures: std::sync::Mutex<std::collections::HashMap<ObjectRef<Experiment>, reconcile::Failures>>,
    /// When each experiment's routing was last written by this controller (see `settle`).
    pub routed: std::sync::Mutex<std::collections::HashMap<ObjectRef<Experiment>, crate::clock::Time>>,
    /// What this controller's own writes to experiments replaced, to tell a cache that lags them.
    pub superseded: reconcile::Superseded,
}

impl Shared {
    /// The shard `exp` belongs to.
    pub(crate) fn shard(&self, exp: &Experiment) -> &Shard {
        let ns = exp.metadata.namespace.as_deref().unwrap_or_default();
        &self.shards[shards::shard_of(ns, &exp.name_any(), self.shards.len())]
    }

    /// Forgets what this replica remembers of a shard's experiments, as a restart would: another
    /// replica may have written them since this one last held the shard.
    fn forget(&self, shard: usize) {
        let count = self.shards.len();
        let theirs = |key: &ObjectRef<Experiment>| {
            shards::shard_of(key.namespace.as_deref().unwrap_or_default(), &key.name, count) == shard
        };
        self.due.lock().expect("not poisoned").retain(|k, _| !theirs(k));
        self.failures.lock().expect("not poisoned").retain(|k, _| !theirs(k));
        self.routed.lock().expect("not poisoned").retain(|k, _| !theirs(k));
        self.superseded.forget(theirs);
    }
}

/// Runs the controller, without an election, until `shutdown` resolves.
pub async fn run_controller(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    run_shards(vec![Shard::unfenced(ctx)], scope, futures::stream::pending(), shutdown).await;
}

/// Runs the controller over `shards` until `shutdown` resolves. Every kind a reconcile reads is
/// watched once; the watch fills a cache ([`World`]) and tells the controller which experiments
/// to look at. `gained` names each shard as this replica takes it: its experiments are looked at
/// at once.
pub(crate) async fn run_shards(
    shards: Vec<Shard>,
    scope: Scope,
    gained: impl futures::Stream<Item = usize> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = shards[0].ctx.clone();
    let client = ctx.client.clone();
    let shutdown = shutdown.shared();
    let policies = tokio::spawn(policies::run(policies::Writer { shard: shards[0].clone() }, shutdown.clone()));
    let experiments: Api<Experiment> = match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config = world::watch_config(&scope);
    let (world, watches) = World::watch(&client, &scope);
    let controller = Controller::new(experiments, config);
    let store = controller.store();
    let (s1, s2, s3, s4, s5, s6, s7, s8, s9, s10) = (
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
    );
    let shared = Arc::new(Shared {
        shards,
        world,
        lanes: lanes::Lanes::new(scope.concurrency),
        due: Default::default(),
        failures: Default::default(),
        routed: Default::default(),
        superseded: Default::default(),
    });
    let taken = {
        let shared = shared.clone();
        gained.flat_map(move |shard| {
            shared.forget(shard);
            let count = shared.shards.len();
            let theirs: Vec<ObjectRef<Experiment>> = store
                .state()
                .iter()
                .filter(|e| {
                    shards::shard_of(e.metadata.namespace.as_deref().unwrap_or_default(), &e.name_any(), count) == shard
                })
                .map(|e| ObjectRef::from_obj(e.as_ref()))
                .collect();
            futures::stream::iter(theirs)
        })
    };
    let controller = controller
        .watches_stream(watches.deployments, move |d| triggers::deployment(&s1, &d))
        .watches_stream(watches.pods, move |p| triggers::pod(&s2, &p))
        .watches_stream(watches.services, move |s| triggers::service(&s3, &s))
        .watches_stream(watches.virtual_services, move |v| triggers::virtual_service(&s4, &v))
        .watches_stream(watches.destination_rules, move |d| triggers::destination_rule(&s5, &d))
        .watches_stream(watches.telemetries, move |t| triggers::telemetry(&s9, &t))
        .watches_stream(watches.http_routes, move |r| triggers::http_route(&s10, &r))
        .watches_stream(watches.namespaces, move |n| triggers::namespace(&s6, &n))
        .watches_stream(watches.policies, move |_| triggers::all(&s7))
        .watches_stream(watches.crds, move |_| triggers::all(&s8))
        .reconcile_on(taken);
    let metrics = ctx.metrics.clone();
    let mut heartbeat = Heartbeat::new(&metrics, Loop::Controller);
    // Reconciles run inside this stream's poll: while one blocks the thread, the heartbeat stops.
    let results = controller.graceful_shutdown_on(shutdown).run(
        |exp, shared| within(RECONCILE_LIMIT, reconcile::reconcile(exp, shared)),
        reconcile::error_policy,
        shared,
    );
    tokio::pin!(results);
    loop {
        tokio::select! {
            result = results.next() => match result {
                Some(Err(e)) => tracing::debug!(error = %e, "controller stream"),
                Some(Ok(_)) => {}
                None => break,
            },
            () = heartbeat.tick() => {}
        }
    }
    if let Err(e) = policies.await {
        tracing::warn!(error = %e, "the RolloutPolicy loop ended abnormally");
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
