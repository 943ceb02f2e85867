//! Planning an experiment: with the traffic it will get, how likely is the right decision by
//! `maxDuration`, and when does it come?
//!
//! A seeded Monte-Carlo of the test the engine runs: each interval adds binomial conversions to
//! each arm's expected share of the traffic, and every look calls the engine's own mSPRT
//! ([`sequential::msprt`], [`sequential::msprt_one_sided_p`], tuned by
//! [`sequential::tau2_from_planned`] exactly as the decision is) or, for a fixed horizon, its
//! z-test once at the horizon. The decision rules around the test are the controller's: no
//! promotion before `minSamplesPerArm` and `minDuration`, a guardrail's harm test from the first
//! look, the first decision ends the experiment, looks every `interval` up to `maxDuration`.
//!
//! With several treatment arms the effect is planned for the one with the smallest share, at
//! α / (treatment arms): the first step of Holm's correction the engine applies.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::decision::DEFAULT_PLANNED_SAMPLES_PER_ARM;
use super::sequential::{self, Difference};
use super::simulation::binomial;
use super::{Alternative, Result, invalid, normal, proportions};

/// What one sample is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Request,
    /// First exposures: each user is counted once, so users/s = requests/s ÷ visits per user.
    User {
        visits_per_user: f64,
    },
}

/// The arms' traffic weights (control first) for `duration`; `None`: until the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub weights: Vec<f64>,
    pub duration: Option<Duration>,
}

/// The test the engine runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Test {
    /// mSPRT tuned to this planned sample size per arm (`horizon.samplesPerArm`, else the
    /// engine's default).
    Sequential { planned_samples_per_arm: u64 },
    /// Fixed horizon at this many samples in the smallest arm.
    FixedSamples(u64),
    /// Fixed horizon once this much time has elapsed.
    FixedDuration(Duration),
}

impl Test {
    /// The sequential test tuned as the engine tunes it: to `planned` samples per arm, else to its default.
    pub fn sequential(planned: Option<u64>) -> Self {
        Self::Sequential { planned_samples_per_arm: planned.unwrap_or(DEFAULT_PLANNED_SAMPLES_PER_ARM) }
    }
}

/// The effect to plan for, as proportions (conversion, error rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// The treatment converts at `baseline · (1 + uplift)`; higher is better. The right decision
    /// is a promotion for a positive uplift, a rollback for a negative one.
    Goal { baseline: f64, uplift: f64 },
    /// The treatment's rate is `baseline + difference` (higher is worse) and `margin` is the
    /// tolerated harm. The right decision is "non-inferior" when `difference < margin`, a
    /// rollback otherwise.
    Guardrail { baseline: f64, difference: f64, margin: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// Requests per second reaching the service.
    pub traffic: f64,
    pub unit: Unit,
    /// Consecutive phases; the last one's duration is ignored (it lasts to the end).
    pub schedule: Vec<Phase>,
    pub interval: Duration,
    pub max_duration: Duration,
    pub min_duration: Duration,
    pub min_samples_per_arm: u64,
    pub alpha: f64,
    pub test: Test,
    /// Simulated experiments; a few thousand give the power to about ±0.01.
    pub runs: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Share of experiments that reach the right decision by `maxDuration`.
    pub power: f64,
    /// Share that reach the wrong one (a false promotion or a false rollback).
    pub wrong: f64,
    /// Time by which half of all experiments have decided rightly (`None`: power below 0.5).
    pub median: Option<Duration>,
    /// Time by which 80% have (`None`: power below 0.8).
    pub p80: Option<Duration>,
    /// Samples in the smaller analysed arm at those times.
    pub samples_at_median: Option<u64>,
    pub samples_at_p80: Option<u64>,
}

/// One look: its time and the expected cumulative samples of control and treatment.
struct Look {
    at: Duration,
    control: u64,
    treatment: u64,
}

#[derive(PartialEq)]
enum Call {
    Right,
    Wrong,
    Undecided,
}

pub fn plan(input: &PlanInput, effect: &Effect) -> Result<Plan> {
    check_input(input)?;
    let (pc, pt) = rates(effect)?;
    let looks = looks(input);
    let treatments = input.schedule[0].weights.len() - 1;
    // Each run draws from its own stream, so a run's path does not depend on how long the
    // others ran: a longer maxDuration only extends paths (power can only rise with it).
    let mut seeds = StdRng::seed_from_u64(input.seed);
    let mut times = Vec::new();
    let mut wrong = 0usize;
    for _ in 0..input.runs {
        let mut rng = StdRng::seed_from_u64(seeds.random());
        let (mut xc, mut xt, mut prev) = (0u64, 0u64, (0u64, 0u64));
        for look in &looks {
            xc += binomial(&mut rng, look.control - prev.0, pc);
            xt += binomial(&mut rng, look.treatment - prev.1, pt);
            prev = (look.control, look.treatment);
            match call(input, effect, treatments, look, (xc, xt))? {
                Call::Undecided => continue,
                Call::Right => times.push(look.at),
                Call::Wrong => wrong += 1,
            }
            break;
        }
    }
    times.sort_unstable();
    let runs = input.runs as f64;
    // The time by which `share` of all runs decided rightly: the k-th fastest right decision.
    let quantile = |share: f64| times.get(((share * runs).ceil() as usize).max(1) - 1).copied();
    let samples =
        |at: Option<Duration>| at.and_then(|at| looks.iter().find(|l| l.at == at)).map(|l| l.control.min(l.treatment));
    let (median, p80) = (quantile(0.5), quantile(0.8));
    Ok(Plan {
        power: times.len() as f64 / runs,
        wrong: wrong as f64 / runs,
        median,
        p80,
        samples_at_median: samples(median),
        samples_at_p80: samples(p80),
    })
}

/// The `maxDuration` at which 80% of experiments would decide rightly, searched up to `limit`
/// (`None`: not by then, e.g. because a fixed horizon is too small whatever the duration).
pub fn duration_for_power(input: &PlanInput, effect: &Effect, limit: Duration) -> Result<Option<Duration>> {
    let longer = PlanInput { max_duration: limit, ..input.clone() };
    Ok(plan(&longer, effect)?.p80)
}

fn check_input(input: &PlanInput) -> Result<()> {
    if !(input.traffic.is_finite() && input.traffic > 0.0) {
        return invalid(format!("traffic {} must be a positive number of requests per second", input.traffic));
    }
    if let Unit::User { visits_per_user } = input.unit
        && !(visits_per_user.is_finite() && visits_per_user >= 1.0)
    {
        return invalid(format!("visits per user {visits_per_user} must be at least 1"));
    }
    if input.interval.is_zero() || input.max_duration < input.interval {
        return invalid(format!(
            "maxDuration {:?} must be at least one interval ({:?})",
            input.max_duration, input.interval
        ));
    }
    if !(input.alpha > 0.0 && input.alpha < 1.0) {
        return invalid(format!("alpha {} must lie in (0, 1)", input.alpha));
    }
    if input.runs == 0 {
        return invalid("runs must be at least 1");
    }
    let Some(first) = input.schedule.first() else {
        return invalid("the schedule needs at least one phase of weights");
    };
    for phase in &input.schedule {
        if phase.weights.len() < 2 || phase.weights.len() != first.weights.len() {
            return invalid(format!(
                "weights {:?} must give the control and at least one more arm, the same arms in every phase",
                phase.weights
            ));
        }
        if phase.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || phase.weights.iter().sum::<f64>() <= 0.0 {
            return invalid(format!("weights {:?} must be non-negative with a positive sum", phase.weights));
        }
    }
    match input.test {
        Test::Sequential { planned_samples_per_arm: 0 } | Test::FixedSamples(0) => {
            invalid("the planned samples per arm must be at least 1")
        }
        _ => Ok(()),
    }
}

/// Control and treatment rates of the effect.
fn rates(effect: &Effect) -> Result<(f64, f64)> {
    let rate = |name: &str, p: f64| {
        if p > 0.0 && p < 1.0 { Ok(p) } else { invalid(format!("{name} {p} must lie strictly between 0 and 1")) }
    };
    match *effect {
        Effect::Goal { baseline, uplift } => {
            if uplift == 0.0 || !uplift.is_finite() {
                return invalid(format!("uplift {uplift} must be a non-zero relative change (0.1 for +10%)"));
            }
            Ok((rate("baseline", baseline)?, rate("baseline × (1 + uplift)", baseline * (1.0 + uplift))?))
        }
        Effect::Guardrail { baseline, difference, margin } => {
            if !(margin.is_finite() && margin >= 0.0) {
                return invalid(format!("margin {margin} must be finite and ≥ 0"));
            }
            Ok((rate("baseline", baseline)?, rate("baseline + difference", baseline + difference)?))
        }
    }
}

/// Every look up to `maxDuration` with the expected samples of the control and of the treatment
/// arm the effect is planned for (the one with the smallest share).
fn looks(input: &PlanInput) -> Vec<Look> {
    let per_second = match input.unit {
        Unit::Request => input.traffic,
        Unit::User { visits_per_user } => input.traffic / visits_per_user,
    };
    let last = input.schedule.last().expect("checked: at least one phase");
    let treatment = (1..last.weights.len()).min_by(|&a, &b| last.weights[a].total_cmp(&last.weights[b])).unwrap_or(1);
    let phase_at = |t: Duration| {
        let mut end = Duration::ZERO;
        for phase in &input.schedule {
            match phase.duration {
                Some(d) if t >= end.saturating_add(d) => end = end.saturating_add(d),
                _ => return phase,
            }
        }
        last
    };
    let (mut looks, mut c, mut tr) = (Vec::new(), 0.0, 0.0);
    let mut at = input.interval;
    while at <= input.max_duration {
        // The interval's traffic follows the weights in force when it began.
        let w = &phase_at(at - input.interval).weights;
        let units = per_second * input.interval.as_secs_f64() / w.iter().sum::<f64>();
        c += units * w[0];
        tr += units * w[treatment];
        looks.push(Look { at, control: c.floor() as u64, treatment: tr.floor() as u64 });
        at += input.interval;
    }
    looks
}

/// The engine's call at one look, judged against the truth of `effect`.
fn call(input: &PlanInput, effect: &Effect, treatments: usize, look: &Look, (xc, xt): (u64, u64)) -> Result<Call> {
    let (nc, nt) = (look.control, look.treatment);
    if nc == 0 || nt == 0 {
        return Ok(Call::Undecided);
    }
    // `minSamplesPerArm` holds back every decision but a guardrail's harm; `minDuration` only promotions.
    let enough = nc.min(nt) >= input.min_samples_per_arm.max(1);
    let may_promote = enough && look.at >= input.min_duration;
    let d = sequential::proportion_difference(xc, nc, xt, nt)?;
    if d.variance <= 0.0 {
        return Ok(Call::Undecided); // no variance yet: the engine continues
    }
    let family = input.alpha / treatments as f64;
    let judged = |promote: bool, right_to_promote: bool| {
        if promote == right_to_promote { Call::Right } else { Call::Wrong }
    };
    match (input.test, *effect) {
        (Test::Sequential { planned_samples_per_arm }, Effect::Goal { uplift, .. }) => {
            if !enough {
                return Ok(Call::Undecided);
            }
            let tau2 = tau2(input.alpha, planned_samples_per_arm, nc + nt, d);
            let better = d.estimate > 0.0;
            if sequential::msprt(d, tau2, 0.0, input.alpha)?.p_value > family || (better && !may_promote) {
                return Ok(Call::Undecided);
            }
            Ok(judged(better, uplift > 0.0))
        }
        (Test::Sequential { planned_samples_per_arm }, Effect::Guardrail { difference, margin, .. }) => {
            let tau2 = tau2(input.alpha, planned_samples_per_arm, nc + nt, d);
            let harm = |estimate| Difference { estimate, variance: d.variance };
            // The harm test runs from the first look; showing non-inferiority waits like a promotion.
            if sequential::msprt_one_sided_p(harm(d.estimate), tau2, margin, input.alpha)? <= family {
                return Ok(judged(false, difference < margin));
            }
            let non_inferior =
                sequential::msprt_one_sided_p(harm(-d.estimate), tau2, -margin, input.alpha)? <= input.alpha;
            if may_promote && non_inferior { Ok(judged(true, difference < margin)) } else { Ok(Call::Undecided) }
        }
        (Test::FixedSamples(_) | Test::FixedDuration(_), _) if !(enough && at_horizon(input.test, look)) => {
            Ok(Call::Undecided)
        }
        // At the horizon the test is over: anything short of a promotion is a rollback, and a
        // promotion before `minDuration` waits for a later look (the test is run again then).
        (_, Effect::Goal { uplift, .. }) => {
            let z = proportions::two_proportion_ztest(xt, nt, xc, nc, Alternative::TwoSided)?;
            let promote = z.p_value <= family && d.estimate > 0.0;
            if promote && !may_promote { Ok(Call::Undecided) } else { Ok(judged(promote, uplift > 0.0)) }
        }
        (_, Effect::Guardrail { difference, margin, .. }) => {
            let non_inferior = normal::cdf((d.estimate - margin) / d.variance.sqrt()) <= input.alpha;
            if non_inferior && !may_promote {
                Ok(Call::Undecided)
            } else {
                Ok(judged(non_inferior, difference < margin))
            }
        }
    }
}

fn at_horizon(test: Test, look: &Look) -> bool {
    match test {
        Test::Sequential { .. } => false,
        Test::FixedSamples(n) => look.control.min(look.treatment) >= n,
        Test::FixedDuration(d) => look.at >= d,
    }
}

/// The mixing variance exactly as the engine tunes it for a pair of arms.
fn tau2(alpha: f64, planned_per_arm: u64, units: u64, d: Difference) -> f64 {
    sequential::tau2_from_planned(alpha, 2.0 * planned_per_arm as f64, units as f64, d.variance)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
