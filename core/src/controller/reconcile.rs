//! One reconcile of one Experiment: observe → plan (pure) → apply (make-before-break) → decide the
//! next state (pure) → write status and events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::analysis::{AnalysisError, ConfigError};
use crate::api::{ArmSamples, ArmWeightStatus, Experiment, ExperimentStatus, Phase, defaults};
use crate::plan::{self, Plan, PlanError, Target};
use crate::policy;
use crate::stats::decision::{Decision, Outcome};

use super::Context;
use super::apply::{Applied, FIELD_MANAGER, apply};
use super::commands::{Commands, clear_one_shot};
use super::conditions::{self, event, reason, set};
use super::error::{Error, Result};
use super::observe::{Observation, observe};
use super::progress::{self, Tick};
use super::telemetry::{OutcomeLabel, PhaseLabel};

pub(crate) const FINALIZER: &str = "forklane.io/routing";

/// How long to wait for pods or routing before looking again (real time).
const WAIT: Duration = Duration::from_millis(500);

pub(crate) async fn reconcile(exp: Arc<Experiment>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = exp.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, exp, |event| async {
        match event {
            Finalizer::Apply(exp) => run(&exp, &ctx, &ns).await,
            Finalizer::Cleanup(exp) => cleanup(&exp, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e) | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
            Error::Kube(e)
        }
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    result
}

pub(crate) fn error_policy(_exp: Arc<Experiment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.inc();
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

async fn run(exp: &Experiment, ctx: &Context, ns: &str) -> Result<Action> {
    let now = ctx.clock.now();
    let obs = observe(&ctx.client, exp, ns).await?;
    let mode = obs.mode.expect("observe sets the mode");
    let before = exp.status.clone().unwrap_or_default();
    let mut status = before.clone();
    status.mesh = Some(mode);
    status.strategy = Some(exp.spec.strategy.name());
    status.observed_generation = exp.metadata.generation;
    let generation = exp.metadata.generation;

    // An invalid experiment plans nothing and touches nothing.
    let start = plan::plan(exp, &Target::Step(0), mode, &obs.plan);
    let states = match start {
        Ok(p) => p.states,
        Err(e) => return finish_failed(exp, ctx, ns, status, &e).await,
    };

    let started = !matches!(before.phase, None | Some(Phase::Pending));
    if !obs.conflicts.is_empty() && !started {
        let message = format!(
            "another VirtualService routes the same host: {}; Istio's choice between them is undefined",
            obs.conflicts.join(", ")
        );
        set(
            &mut status.conditions,
            conditions::READY,
            false,
            reason::CONFLICTING_VIRTUAL_SERVICE,
            message.clone(),
            generation,
            now,
        );
        status.phase = Some(Phase::Pending);
        status.message = Some(message);
        write_status(exp, ctx, ns, &before, status).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let now_unix = now.as_second();
    let violations: Vec<policy::Violation> =
        obs.policies.iter().flat_map(|p| policy::evaluate(p, exp, &obs.namespace_labels, Some(now_unix))).collect();
    let manual = obs.policies.iter().any(|p| {
        p.spec.require_manual_promotion && policy::selects(p.spec.namespace_selector.as_ref(), &obs.namespace_labels)
    });
    if !violations.is_empty() {
        let message = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        set(
            &mut status.conditions,
            conditions::POLICY_VIOLATION,
            true,
            reason::POLICY_VIOLATED,
            message.clone(),
            generation,
            now,
        );
        if !started {
            status.phase = Some(Phase::Pending);
        }
        status.message = Some(format!("traffic held: {message}"));
        publish(ctx, exp, event::POLICY_VIOLATION, &message, true).await;
        write_status(exp, ctx, ns, &before, status).await?;
        return Ok(Action::requeue(ctx.clock.real_duration(Duration::from_secs(60))));
    }
    set(
        &mut status.conditions,
        conditions::POLICY_VIOLATION,
        false,
        reason::COMPLIANT,
        "no policy violated".into(),
        generation,
        now,
    );

    let target = progress::target(&status);
    let planned = match plan::plan(exp, &target, mode, &obs.plan) {
        Ok(p) => p,
        Err(e) => return finish_failed(exp, ctx, ns, status, &e).await,
    };
    let mut writes = 0;
    let applied = apply(&ctx.client, exp, ns, &planned, &obs, &mut writes).await?;
    ctx.count_writes(writes);
    let settled = applied == Applied::Settled;
    record_weights(&mut status, &planned);

    let commands = Commands::from_annotations(exp.metadata.annotations.as_ref());
    let mut decision: Option<Decision> = None;
    let mut invalid: Option<ConfigError> = None;
    let mut unavailable = false;
    if settled && progress::analysis_due(&exp.spec, &status, now) {
        match measure(exp, ctx, &obs, &planned, &status, now).await {
            Ok((d, samples)) => {
                set(
                    &mut status.conditions,
                    conditions::METRICS_UNAVAILABLE,
                    false,
                    reason::METRICS_READ,
                    "metrics read".into(),
                    generation,
                    now,
                );
                set(
                    &mut status.conditions,
                    conditions::ANALYSIS_CONFIG_INVALID,
                    false,
                    reason::ANALYSIS_RAN,
                    "the analysis ran and decided".into(),
                    generation,
                    now,
                );
                status.samples = samples;
                decision = Some(d);
            }
            // The state machine ends the experiment: no retry every interval.
            Err(AnalysisError::Config(e)) => {
                set(
                    &mut status.conditions,
                    conditions::ANALYSIS_CONFIG_INVALID,
                    true,
                    reason::CONFIG_ERROR,
                    e.to_string(),
                    generation,
                    now,
                );
                invalid = Some(e);
            }
            Err(e @ AnalysisError::Unavailable { .. }) => {
                let message = e.to_string();
                set(
                    &mut status.conditions,
                    conditions::METRICS_UNAVAILABLE,
                    true,
                    reason::METRICS_UNAVAILABLE,
                    message.clone(),
                    generation,
                    now,
                );
                status.last_analysis_at = Some(crate::clock::format_time(now));
                unavailable = true;
                status.message = Some(format!("weights held: {message}"));
                publish(ctx, exp, event::METRICS_UNAVAILABLE, &message, true).await;
            }
        }
    }
    if let Some(d) = &decision {
        let outcome = match &d.outcome {
            Outcome::Promote { .. } => "promote",
            Outcome::Rollback { .. } => "rollback",
            Outcome::Continue { .. } => "continue",
        };
        let srm = d.srm.is_some_and(|s| s.mismatch);
        ctx.metrics.decisions.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        let p = d
            .srm
            .as_ref()
            .map(|s| format!("sequential SRM p = {:.3e}", s.p_value))
            .unwrap_or_else(|| "not checked".into());
        set(
            &mut status.conditions,
            conditions::SAMPLE_RATIO_MISMATCH,
            srm,
            if srm { reason::SAMPLE_RATIO_MISMATCH } else { reason::SAMPLE_RATIO_OK },
            p,
            generation,
            now,
        );
    }

    let tick = Tick {
        spec: &exp.spec,
        status: &status,
        now,
        states,
        settled,
        commands: &commands,
        policy_manual_promotion: manual,
        decision: decision.as_ref(),
        analysis_invalid: invalid.as_ref(),
        metrics_unavailable: unavailable,
    };
    let transition = progress::advance(&tick);
    let mut next = transition.status;
    if let Applied::Waiting(message) = &applied
        && (next.final_arm.is_none() || next.phase == Some(Phase::Promoting))
    {
        next.message = Some(message.clone());
    }
    let phase = next.phase.unwrap_or(Phase::Pending);
    set(
        &mut next.conditions,
        conditions::READY,
        settled,
        if settled { reason::ROUTING_APPLIED } else { reason::WAITING },
        if settled { "routing matches the current step".into() } else { next.message.clone().unwrap_or_default() },
        generation,
        now,
    );
    let progressing = !matches!(phase, Phase::Succeeded | Phase::RolledBack | Phase::Failed);
    set(
        &mut next.conditions,
        conditions::PROGRESSING,
        progressing,
        progress::phase_reason(phase),
        next.message.clone().unwrap_or_default(),
        generation,
        now,
    );
    set(
        &mut next.conditions,
        conditions::ANALYSING,
        phase == Phase::Analysing,
        if phase == Phase::Analysing { reason::ANALYSING } else { reason::NOT_ANALYSING },
        next.message.clone().unwrap_or_default(),
        generation,
        now,
    );
    let moved = next.current_step != before.current_step || next.final_arm != before.final_arm;
    for event in &transition.events {
        publish(ctx, exp, event.reason, &event.message, event.warning).await;
    }
    write_status(exp, ctx, ns, &before, next.clone()).await?;
    if commands.promote.is_some() && (moved || next.phase != Some(Phase::Paused)) {
        let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), ns);
        api.patch(&exp.name_any(), &PatchParams::default(), &Patch::Merge(clear_one_shot())).await?;
    }
    Ok(match (&applied, transition.requeue) {
        (Applied::Waiting(_), _) => Action::requeue(WAIT),
        (_, Some(d)) if d.is_zero() => Action::requeue(Duration::from_millis(1)),
        (_, Some(d)) => Action::requeue(ctx.clock.real_duration(d).max(Duration::from_millis(10))),
        (_, None) => Action::requeue(Duration::from_secs(300)),
    })
}

/// Reads the metrics and decides, or says why there is no decision.
async fn measure(
    exp: &Experiment,
    ctx: &Context,
    obs: &Observation,
    planned: &Plan,
    status: &ExperimentStatus,
    now: jiff::Timestamp,
) -> Result<(Decision, Vec<ArmSamples>), AnalysisError> {
    let window = status
        .analysis_started_at
        .as_deref()
        .and_then(crate::clock::parse_time)
        .map(|s| Duration::from_secs_f64(s.duration_until(now).as_secs_f64()).max(defaults::MIN_MEASUREMENT_WINDOW))
        .unwrap_or(defaults::MEASUREMENT_WINDOW);
    let weights: Vec<(String, i32)> = planned.weights.iter().map(|w| (w.arm.clone(), w.desired)).collect();
    ctx.analyst.decide(exp, obs.mode.expect("mode observed"), window, &weights).await
}

fn record_weights(status: &mut ExperimentStatus, planned: &Plan) {
    status.weights = planned
        .weights
        .iter()
        .map(|w| ArmWeightStatus {
            arm: w.arm.clone(),
            desired: w.desired,
            achieved: (w.achieved * 10.0).round() / 10.0,
        })
        .collect();
    status.weight_summary =
        Some(planned.weights.iter().map(|w| format!("{}={}", w.arm, w.desired)).collect::<Vec<_>>().join(","));
}

async fn finish_failed(
    exp: &Experiment,
    ctx: &Context,
    ns: &str,
    mut status: ExperimentStatus,
    error: &PlanError,
) -> Result<Action> {
    let before = exp.status.clone().unwrap_or_default();
    let message = error.to_string().replace('\n', "; ");
    if before.phase != Some(Phase::Failed) {
        publish(ctx, exp, progress::phase_reason(Phase::Failed), &message, true).await;
    }
    status.phase = Some(Phase::Failed);
    status.message = Some(message);
    write_status(exp, ctx, ns, &before, status).await?;
    Ok(Action::await_change())
}

/// Writes the status with server-side apply, so fields Forklane stops setting disappear.
async fn write_status(
    exp: &Experiment,
    ctx: &Context,
    ns: &str,
    before: &ExperimentStatus,
    status: ExperimentStatus,
) -> Result<()> {
    if let Some(phase) = status.phase
        && before.phase != Some(phase)
    {
        if let Some(old) = before.phase {
            ctx.metrics.experiments.get_or_create(&PhaseLabel { phase: format!("{old:?}") }).dec();
        }
        ctx.metrics.experiments.get_or_create(&PhaseLabel { phase: format!("{phase:?}") }).inc();
    }
    if &status == before {
        return Ok(());
    }
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), ns);
    let body = json!({"apiVersion": "forklane.io/v1alpha1", "kind": "Experiment", "status": status});
    api.patch_status(&exp.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await?;
    Ok(())
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

/// Before an Experiment goes: all traffic back to the control (or the promoted winner), and the
/// routing objects released from the Experiment so that garbage collection leaves them in place.
async fn cleanup(exp: &Experiment, ctx: &Context, ns: &str) -> Result<Action> {
    let obs = observe(&ctx.client, exp, ns).await?;
    let mode = obs.mode.expect("observe sets the mode");
    let status = exp.status.clone().unwrap_or_default();
    let control = exp.spec.control_arm().map(|a| a.name.clone()).unwrap_or_default();
    let arm = status.winner.clone().filter(|_| status.phase == Some(Phase::Succeeded)).unwrap_or(control);
    let mut released = exp.clone();
    released.metadata.uid = None; // no owner reference in the final objects
    if let Ok(planned) = plan::plan(&released, &Target::Final(arm.clone()), mode, &obs.plan) {
        let mut writes = 0;
        let mut obs = obs;
        obs.pods.values_mut().for_each(|p| p.ready = p.ready.max(1)); // deletion must not wait on pods
        apply(&ctx.client, &released, ns, &planned, &obs, &mut writes).await?;
        ctx.count_writes(writes);
    }
    publish(ctx, exp, event::ROUTING_RESTORED, &format!("all traffic to {arm} before deletion"), false).await;
    Ok(Action::await_change())
}
