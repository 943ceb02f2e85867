//! The thin I/O around [`decide`]: read the caches, ask the analyst when a look is due, then send
//! what the decision says (finalizer, objects that differ, leftovers, status, events, the promote
//! annotation). A reconcile in steady state makes no API call at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{Experiment, ExperimentStatus};

use super::apply::{FIELD_MANAGER, gone, remove_leftovers, write};
use super::commands::clear_one_shot;
use super::conditions::{self, event, reason, set};
use super::decide::{FINALIZER, FinalizerChange, Input, Look, Measured, Reconciled, counted_outcome, decide, measured};
use super::error::{Error, Result};
use super::lanes::Lane;
use super::observe::{mode_unsettled, observe, uncached_crds};
use super::telemetry::{OutcomeLabel, PhaseLabel};
use super::{Context, Shared};

/// The longest real wait between two looks at an experiment that waits: watches bring every
/// change sooner; this only bounds a missed one.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// How soon to look again after a write conflicted with a newer version of the object.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// The backoff after failed reconciles (on the controller's clock): doubling from the first,
/// capped.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// A timer this close to falling due counts as due (real time): the scheduler may wake a
/// reconcile a moment early.
const TIMER_SLACK: Duration = Duration::from_millis(50);

/// How soon to look again when the caches lag what the API server has (real time).
const CACHE_CATCH_UP: Duration = Duration::from_millis(200);

pub(crate) async fn reconcile(exp: Arc<Experiment>, shared: Arc<Shared>) -> Result<Action> {
    let shard = shared.shard(&exp);
    if !shard.held() {
        // Another replica leads this shard (and exports its series); taking it over triggers a look.
        shard.ctx.metrics.experiment_series.forget(exp.namespace().as_deref().unwrap_or_default(), &exp.name_any());
        return Ok(Action::await_change());
    }
    let _permit = shared.lanes.enter(lane(&exp, &shared)).await;
    let started = Instant::now();
    let ctx = &shard.ctx;
    ctx.metrics.reconciles.inc();
    // A half-filled cache reads as missing objects: wait for the first complete lists.
    shared.world.ready().await;
    let result = match run(&exp, &shared).await {
        // A write based on a cached object that has changed since (our own status write, say):
        // the cache catches up within moments; look again then, it is not an error.
        Err(error) if error.is_conflict() => {
            Ok(Action::requeue(ctx.clock.real_duration(CONFLICT_RETRY).max(Duration::from_millis(1))))
        }
        other => other,
    };
    let key = ObjectRef::from_obj(exp.as_ref());
    match &result {
        Ok(_) => drop(shared.failures.lock().expect("not poisoned").remove(&key)),
        Err(error) if error.is_fenced() => tracing::info!(experiment = %exp.name_any(), "not leading: no write sent"),
        Err(error) => {
            let message = error.to_string();
            let new = shared.failures.lock().expect("not poisoned").entry(key).or_default().report(&message);
            if new {
                report_error(&exp, ctx, message).await;
            }
        }
    }
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    result
}

/// Which lane a reconcile waits in: due when the spec changed since the status last saw it, the
/// experiment is being deleted, or the timer this controller set has fallen due.
fn lane(exp: &Experiment, shared: &Shared) -> Lane {
    let observed = exp.status.as_ref().and_then(|s| s.observed_generation);
    let timer_due = shared
        .due
        .lock()
        .expect("not poisoned")
        .get(&ObjectRef::from_obj(exp))
        .is_some_and(|due| *due <= Instant::now() + TIMER_SLACK);
    if timer_due || exp.metadata.deletion_timestamp.is_some() || observed != exp.metadata.generation {
        Lane::Due
    } else {
        Lane::Idle
    }
}

/// Records when `exp`'s requeue falls due, and returns it.
fn requeue(exp: &Experiment, shared: &Shared, after: Duration) -> Action {
    let due = Instant::now() + after;
    shared.due.lock().expect("not poisoned").insert(ObjectRef::from_obj(exp), due);
    Action::requeue(after)
}

async fn run(exp: &Experiment, shared: &Shared) -> Result<Action> {
    let ctx = &shared.shard(exp).ctx;
    let ns = exp.namespace().ok_or(Error::NoNamespace)?;
    if shared.superseded.cache_behind(exp) {
        // The watch brings the version this controller wrote within moments.
        return Ok(Action::requeue(CACHE_CATCH_UP));
    }
    let obs = observe(&shared.world, exp, &ns);
    if mode_unsettled(exp) && any_crd_exists(&ctx.client, &uncached_crds(&shared.world, obs.mode)).await? {
        // Istio or the Gateway API was installed just before this experiment and the CRD's watch
        // event is not in the cache yet: deciding now would record another mode for good. The
        // event brings it back.
        return Ok(Action::requeue(CACHE_CATCH_UP));
    }
    let now = ctx.clock.now();
    let key = ObjectRef::from_obj(exp);
    let routed_at = shared.routed.lock().expect("not poisoned").get(&key).copied();
    let mut decided = decide(&Input { exp, obs: &obs, now, measured: None, routed_at });
    if let Some(look) = decided.measure.take() {
        let measured = measure(exp, ctx, &look).await;
        if let Some(outcome) = counted_outcome(&measured) {
            ctx.metrics.decisions.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        }
        decided = decide(&Input { exp, obs: &obs, now, measured: Some(&measured), routed_at });
    }
    // Remembered before sending: a write that fails half-way may still have reached a proxy.
    if decided.routes() {
        remember_routing(shared, exp, now);
    } else if decided.finalizer == Some(FinalizerChange::Remove) {
        shared.routed.lock().expect("not poisoned").remove(&key);
    }
    tracing::debug!(
        experiment = %exp.name_any(),
        writes = decided.writes.len(),
        requeue = ?decided.requeue,
        message = decided.status.message.as_deref().unwrap_or_default(),
        pods = ?obs.pods,
        "decided"
    );
    send(exp, shared, &ns, decided).await
}

/// Remembers `at` as the time of `exp`'s last routing write (what propagation delays count from).
fn remember_routing(shared: &Shared, exp: &Experiment, at: crate::clock::Time) {
    shared.routed.lock().expect("not poisoned").insert(ObjectRef::from_obj(exp), at);
}

/// The version of each experiment that this controller's last write to it replaced. The reconcile
/// that a write's own side effects trigger (a routing object's watch event, say) can run before
/// the Experiment's watch event arrives, from a cached copy that predates the write: deciding from
/// it would repeat, or undo, what was written. Versions are opaque, so only equality counts; a
/// replaced version never comes back.
#[derive(Debug, Default)]
pub(crate) struct Superseded(std::sync::Mutex<std::collections::HashMap<ObjectRef<Experiment>, String>>);

impl Superseded {
    /// Whether the cached `exp` is older than this controller's last write to it. Forgets the
    /// write once the cache has caught up.
    pub(crate) fn cache_behind(&self, exp: &Experiment) -> bool {
        let mut versions = self.0.lock().expect("not poisoned");
        let key = ObjectRef::from_obj(exp);
        let behind = versions.get(&key).is_some_and(|version| exp.resource_version().as_ref() == Some(version));
        if !behind {
            versions.remove(&key);
        }
        behind
    }

    /// Forgets the writes to the experiments `which` selects.
    pub(crate) fn forget(&self, which: impl Fn(&ObjectRef<Experiment>) -> bool) {
        self.0.lock().expect("not poisoned").retain(|key, _| !which(key));
    }

    /// Records that a write replaced `exp`'s version with `written`'s. A write that changed
    /// nothing keeps the version: there is then nothing for the cache to catch up with.
    pub(crate) fn wrote_over(&self, exp: &Experiment, written: &Experiment) {
        if let Some(version) = exp.resource_version()
            && written.resource_version().as_ref() != Some(&version)
        {
            self.0.lock().expect("not poisoned").insert(ObjectRef::from_obj(exp), version);
        }
    }
}

/// Reads made only while an experiment's mode is still to be chosen, one per CRD the cache lacks:
/// asks the API server, which has every CRD created before the experiment.
async fn any_crd_exists(client: &kube::Client, names: &[&str]) -> Result<bool> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        let named = ListParams::default().fields(&format!("metadata.name={name}"));
        if !api.list_metadata(&named).await?.items.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn measure(exp: &Experiment, ctx: &Context, look: &Look) -> Measured {
    measured(ctx.analyst.decide(exp, look.mode, look.window, &look.weights).await)
}

/// Sends the decision, in order. Status is written only when it changed.
async fn send(exp: &Experiment, shared: &Shared, ns: &str, decided: Reconciled) -> Result<Action> {
    let ctx = &shared.shard(exp).ctx;
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), ns);
    if decided.finalizer == Some(FinalizerChange::Add) {
        let mut finalizers = exp.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        // The resourceVersion makes it a precondition: a concurrent change fails instead of being lost.
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": exp.resource_version()}});
        let written = api.patch(&exp.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        shared.superseded.wrote_over(exp, &written);
    }
    let written = write(&ctx.client, ns, &decided.writes).await;
    let removed = if decided.deletes.is_empty() || written.is_err() {
        Ok(0)
    } else {
        remove_leftovers(&ctx.client, ns, &decided.deletes).await
    };
    if decided.routes() {
        // And again once answered: the writes landed at some point before their answers (or the
        // error), which may be well after the reconcile began (a throttled client, a slow server).
        remember_routing(shared, exp, ctx.clock.now());
    }
    ctx.count_writes(written?);
    ctx.count_writes(removed?);
    let before = exp.status.clone().unwrap_or_default();
    if let Some(written) = write_status(exp, ctx, ns, &before, &decided.status).await? {
        shared.superseded.wrote_over(exp, &written);
    }
    if !released(exp, &decided) {
        ctx.metrics.experiment_series.show(ns, &exp.name_any(), &decided.status);
    }
    for e in &decided.events {
        publish(ctx, exp, e.reason, &e.message, e.warning).await;
    }
    if decided.clear_promote {
        let written = api.patch(&exp.name_any(), &PatchParams::default(), &Patch::Merge(clear_one_shot())).await?;
        shared.superseded.wrote_over(exp, &written);
    }
    if decided.finalizer == Some(FinalizerChange::Remove) {
        let finalizers: Vec<&String> = exp.finalizers().iter().filter(|f| *f != FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": exp.resource_version()}});
        gone(api.patch(&exp.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop))?;
    }
    if released(exp, &decided) {
        ctx.metrics.experiment_series.forget(ns, &exp.name_any());
    }
    Ok(match decided.requeue {
        Some(d) => requeue(exp, shared, ctx.clock.real_duration(d).clamp(Duration::from_millis(1), SAFETY_NET)),
        None => Action::await_change(),
    })
}

/// Whether the experiment goes once this decision is sent: its finalizer removed now, or deleted
/// without it.
fn released(exp: &Experiment, decided: &Reconciled) -> bool {
    let deleting_without_finalizer =
        exp.metadata.deletion_timestamp.is_some() && !exp.finalizers().iter().any(|f| f == FINALIZER);
    decided.finalizer == Some(FinalizerChange::Remove) || deleting_without_finalizer
}

/// The failed reconciles of one experiment since its last success.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    /// How many in a row: the backoff grows with it.
    pub count: u32,
    /// The errors reported (condition and event) since the last success.
    pub reported: std::collections::BTreeSet<String>,
}

impl Failures {
    /// Whether `message` is new since the last success, and so to be reported. The cached
    /// Experiment may not show the condition written a moment ago: retries in quick succession
    /// (the finalizer or the status write trigger the next) would each publish the same event.
    pub(crate) fn report(&mut self, message: &str) -> bool {
        self.reported.insert(message.to_string())
    }
}

/// Exponential backoff with jitter per experiment: a failing experiment is retried ever more
/// rarely (up to 5 minutes) and does not crowd out the others.
pub(crate) fn error_policy(exp: Arc<Experiment>, error: &Error, shared: Arc<Shared>) -> Action {
    let ctx = &shared.shard(&exp).ctx;
    ctx.metrics.errors.inc();
    tracing::warn!(%error, experiment = %exp.name_any(), "reconcile failed");
    let count = {
        let mut failures = shared.failures.lock().expect("not poisoned");
        let failed = failures.entry(ObjectRef::from_obj(exp.as_ref())).or_default();
        failed.count += 1;
        failed.count
    };
    requeue(&exp, &shared, ctx.clock.real_duration(backoff(count, jitter())).max(Duration::from_millis(1)))
}

/// A number in [0, 1) that differs between calls (no RNG dependency for one spread).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(Instant::now()) % 10_000) as f64 / 10_000.0
}

/// The wait after the `n`-th failure in a row, `jitter` in [0, 1) spreading it by ±20%.
pub(crate) fn backoff(n: u32, jitter: f64) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1 << n.saturating_sub(1).min(16));
    doubled.min(BACKOFF_CAP).mul_f64(0.8 + 0.4 * jitter)
}

/// The error in a `ReconcileError` condition and, when the message is new, a Warning event.
/// Only the conditions are written: the cached copy may not show the status this controller
/// wrote moments ago, and an apply of its whole status would, since server-side apply drops the
/// fields a manager stops setting, erase the phase, step and weights written since.
async fn report_error(exp: &Experiment, ctx: &Context, message: String) {
    let Some(ns) = exp.namespace() else { return };
    let status = exp.status.clone().unwrap_or_default();
    let known = status.conditions.iter().any(|c| c.type_ == conditions::RECONCILE_ERROR && c.message == message);
    if known {
        return;
    }
    publish(ctx, exp, event::RECONCILE_ERROR, &message, true).await;
    let mut next = status.clone();
    let (generation, now) = (exp.metadata.generation, ctx.clock.now());
    set(&mut next.conditions, conditions::RECONCILE_ERROR, true, reason::FAILED, message, generation, now);
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    if let Err(e) = api.patch_status(&exp.name_any(), &params, &Patch::Merge(conditions_only(&next))).await {
        tracing::debug!(error = %e, "could not record the reconcile error");
    }
}

/// A merge patch of the status that sets its conditions and leaves every other field as it is.
fn conditions_only(status: &ExperimentStatus) -> serde_json::Value {
    json!({"status": {"conditions": status.conditions}})
}

/// Writes the status with server-side apply, so fields Forklane stops setting disappear; nothing
/// when it did not change. The Experiment as written.
async fn write_status(
    exp: &Experiment,
    ctx: &Context,
    ns: &str,
    before: &ExperimentStatus,
    status: &ExperimentStatus,
) -> Result<Option<Experiment>> {
    if status == before {
        return Ok(None);
    }
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), ns);
    let body = json!({"apiVersion": "forklane.io/v1alpha1", "kind": "Experiment", "status": status});
    let written =
        api.patch_status(&exp.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await?;
    if let Some(phase) = status.phase
        && before.phase != Some(phase)
    {
        if let Some(old) = before.phase {
            ctx.metrics.experiments.get_or_create(&PhaseLabel { phase: format!("{old:?}") }).dec();
        }
        ctx.metrics.experiments.get_or_create(&PhaseLabel { phase: format!("{phase:?}") }).inc();
    }
    Ok(Some(written))
}

async fn publish(ctx: &Context, exp: &Experiment, reason: &str, message: &str, warning: bool) {
    let event = KubeEvent {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_string(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &exp.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_recorded_without_touching_the_rest_of_the_status() {
        let mut status = ExperimentStatus { phase: Some(crate::api::Phase::Paused), ..Default::default() };
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        set(&mut status.conditions, conditions::RECONCILE_ERROR, true, reason::FAILED, "boom".into(), Some(1), now);
        let patch = conditions_only(&status);
        assert_eq!(patch["status"].as_object().unwrap().keys().collect::<Vec<_>>(), ["conditions"]);
        assert_eq!(patch["status"]["conditions"][0]["type"], "ReconcileError");
    }

    #[test]
    fn the_backoff_doubles_up_to_five_minutes_with_jitter() {
        let mid = |n| backoff(n, 0.5);
        assert_eq!([mid(1), mid(2), mid(3), mid(4)].map(|d| d.as_secs()), [1, 2, 4, 8]);
        assert_eq!((mid(9).as_secs(), mid(10)), (256, BACKOFF_CAP));
        assert_eq!(mid(40), BACKOFF_CAP, "no overflow");
        assert!(backoff(3, 0.0) < mid(3) && mid(3) < backoff(3, 0.999));
        assert!(backoff(3, 0.0).as_secs_f64() >= 0.8 * 4.0 && backoff(3, 0.999).as_secs_f64() < 1.2 * 4.0);
        let spread: std::collections::BTreeSet<u64> = (0..20).map(|_| (jitter() * 1e4) as u64).collect();
        assert!(spread.len() > 1 && spread.iter().all(|j| *j < 10_000), "{spread:?}");
    }

    #[test]
    fn an_error_is_reported_once_per_message_until_a_success() {
        let mut failures = Failures::default();
        assert!(failures.report("Service \"my-app\" is invalid"));
        assert!(!failures.report("Service \"my-app\" is invalid"), "a retry of the same error says nothing new");
        assert!(failures.report("timed out"), "a different error is reported");
        assert!(!failures.report("Service \"my-app\" is invalid"), "errors that alternate are each said once");
        assert!(Failures::default().report("timed out"), "after a success (the entry removed) it is new again");
    }

    #[test]
    fn a_cache_is_behind_only_at_the_version_a_write_replaced() {
        let at = |version: &str| {
            let mut exp = crate::fixtures::ExperimentBuilder::canary("quiet").build();
            exp.metadata.resource_version = Some(version.into());
            exp
        };
        let superseded = Superseded::default();
        assert!(!superseded.cache_behind(&at("7")), "nothing written yet");
        superseded.wrote_over(&at("7"), &at("7"));
        assert!(!superseded.cache_behind(&at("7")), "a write that changed nothing leaves nothing to catch up with");
        superseded.wrote_over(&at("7"), &at("9"));
        assert!(superseded.cache_behind(&at("7")));
        assert!(superseded.cache_behind(&at("7")), "still behind until the newer version arrives");
        assert!(!superseded.cache_behind(&at("9")));
        assert!(!superseded.cache_behind(&at("7")), "forgotten once caught up");
    }
}
