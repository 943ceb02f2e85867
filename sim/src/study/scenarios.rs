//! The named, seeded scenarios: which example Experiment, what traffic, what truth, and what the
//! right decision is.

use std::time::Duration;

use crate::traffic::population::{Modulation, PodSpread, Propensity, Returns, Visits};

/// The Experiment a scenario runs: one of `examples/`, read with the repo's loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Example {
    /// `examples/ab-test.yaml`: sequential, α 0.05, interval 1m, maxDuration 24h, SRM on,
    /// conversion goal and an error-rate guardrail (margin 0.002), sticky 90/10.
    AbTest,
    /// `examples/canary.yaml`: setWeight 10, pause 5m, then an analysis step (interval 1m,
    /// maxDuration 2h, error-rate margin 0.002 and latency > 500 ms margin 0.01 guardrails).
    Canary,
}

impl Example {
    pub fn file(self) -> &'static str {
        match self {
            Example::AbTest => "examples/ab-test.yaml",
            Example::Canary => "examples/canary.yaml",
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            Example::AbTest => include_str!("../../../examples/ab-test.yaml"),
            Example::Canary => include_str!("../../../examples/canary.yaml"),
        }
    }
}

/// Which requests the A/B analysis counts (`spec.analysis.unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// First exposures only: each user once.
    User,
    /// First exposures and returning visits.
    Request,
}

/// One arm's true behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmTruth {
    pub conversion: f64,
    pub error_rate: f64,
    pub median_ms: f64,
    pub p99_ms: f64,
}

impl ArmTruth {
    pub const BASELINE: ArmTruth = ArmTruth { conversion: 0.05, error_rate: 0.001, median_ms: 40.0, p99_ms: 250.0 };
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Requests per second to the service, on average (first and later visits).
    pub rps: f64,
    pub visits: Visits,
    pub returns: Returns,
    /// Concentration of the users' Beta conversion propensities.
    pub concentration: f64,
    pub modulation: Modulation,
    pub pods: PodSpread,
    pub pods_per_arm: usize,
    /// Share of requests that targeting rules send to the candidate (cohort `targeted`).
    pub targeted_share: f64,
    /// The time of day the experiment starts.
    pub start_of_day: Duration,
}

impl Traffic {
    /// Independent requests at a constant rate, 3 identical pods per arm.
    pub fn requests(rps: f64) -> Self {
        Traffic {
            rps,
            visits: Visits::ONCE,
            returns: Returns::default(),
            concentration: 20.0,
            modulation: Modulation::default(),
            pods: PodSpread::default(),
            pods_per_arm: 3,
            targeted_share: 0.0,
            start_of_day: Duration::from_secs(10 * 3600),
        }
    }

    pub(crate) fn propensity(&self, mean: f64) -> Propensity {
        Propensity { mean, concentration: self.concentration }
    }
}

/// What a scenario should end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Identical arms (A/A): any promotion or rollback is false.
    NoDecision,
    /// The candidate is better (A/B) or harmless (canary): promoting it is right.
    Promote,
    /// The candidate is harmful: rolling back is right.
    Rollback,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub example: Example,
    pub seed: u64,
    pub traffic: Traffic,
    pub control: ArmTruth,
    pub candidate: ArmTruth,
    /// The A/B split (control, candidate) instead of the example's.
    pub split: Option<(i32, i32)>,
    pub unit: Option<Unit>,
    pub expect: Expect,
    /// Also run Flagger's threshold rule on the same traffic model.
    pub flagger: bool,
}

fn ab(name: &str, about: &str, seed: u64, traffic: Traffic, split: (i32, i32), unit: Unit) -> Scenario {
    Scenario {
        name: name.into(),
        about: about.into(),
        example: Example::AbTest,
        seed,
        traffic,
        control: ArmTruth::BASELINE,
        candidate: ArmTruth::BASELINE,
        split: Some(split),
        unit: Some(unit),
        expect: Expect::NoDecision,
        flagger: false,
    }
}

fn canary(
    name: &str,
    about: &str,
    seed: u64,
    rps: f64,
    control: ArmTruth,
    candidate: ArmTruth,
    expect: Expect,
) -> Scenario {
    Scenario {
        name: name.into(),
        about: about.into(),
        example: Example::Canary,
        seed,
        traffic: Traffic::requests(rps),
        control,
        candidate,
        split: None,
        unit: None,
        expect,
        flagger: true,
    }
}

fn sticky(mean: f64, inflation: f64, rps: f64) -> Traffic {
    Traffic { visits: Visits::new(mean, inflation).expect("valid visits"), ..Traffic::requests(rps) }
}

/// The candidate error rates of the operating-characteristic curve (the control's is 0.1%).
pub const OC_ERROR_RATES: [(&str, f64); 5] = [("0.1", 0.001), ("0.2", 0.002), ("0.5", 0.005), ("1", 0.01), ("2", 0.02)];
/// The request rates of the canary rows.
pub const CANARY_RPS: [u32; 4] = [2, 5, 20, 100];

/// Every scenario, in report order.
pub fn all() -> Vec<Scenario> {
    let mut out = vec![
        ab(
            "aa-requests-50-50",
            "A/A, independent requests, 50/50, 10 req/s",
            101,
            Traffic::requests(10.0),
            (50, 50),
            Unit::Request,
        ),
        ab(
            "aa-requests-90-10",
            "A/A, independent requests, 90/10 (the example's split), 10 req/s",
            102,
            Traffic::requests(10.0),
            (90, 10),
            Unit::Request,
        ),
        ab(
            "aa-drift",
            "A/A, independent requests, 50/50, 10 req/s; rate CV 0.5 per minute, diurnal ±50%, pods differ (CV 0.3)",
            103,
            Traffic {
                modulation: Modulation::new(0.5, 0.5).expect("valid modulation"),
                pods: PodSpread::new(0.3, 0.3).expect("valid spread"),
                ..Traffic::requests(10.0)
            },
            (50, 50),
            Unit::Request,
        ),
        ab(
            "aa-sticky-k4-user",
            "A/A, sticky users E[k] 2, E[k²]/E[k] 4, 50/50, 10 req/s, unit user",
            104,
            sticky(2.0, 4.0, 10.0),
            (50, 50),
            Unit::User,
        ),
        ab(
            "aa-sticky-k25-user",
            "A/A, sticky heavy-tailed users E[k] 3, E[k²]/E[k] 25, 50/50, 10 req/s, unit user",
            105,
            sticky(3.0, 25.0, 10.0),
            (50, 50),
            Unit::User,
        ),
        ab(
            "aa-sticky-k25-request",
            "the same heavy-tailed users analysed per request (unit request): the contrast",
            105,
            sticky(3.0, 25.0, 10.0),
            (50, 50),
            Unit::Request,
        ),
    ];
    let mut power = ab(
        "power-5-to-5.5",
        "A/B, conversion 5% → 5.5%, independent requests, 50/50, 20 req/s",
        106,
        Traffic::requests(20.0),
        (50, 50),
        Unit::Request,
    );
    power.candidate.conversion = 0.055;
    power.expect = Expect::Promote;
    out.push(power);
    let failing = ArmTruth { error_rate: 1.0, ..ArmTruth::BASELINE };
    out.push(canary(
        "canary-failing-2rps",
        "canary failing every request at 10%, 2 req/s",
        201,
        2.0,
        ArmTruth::BASELINE,
        failing,
        Expect::Rollback,
    ));
    let one_pct = ArmTruth { error_rate: 0.01, ..ArmTruth::BASELINE };
    out.push(canary(
        "canary-identical-1pct-20rps",
        "identical canary, 1% errors in both arms, 20 req/s",
        202,
        20.0,
        one_pct,
        one_pct,
        Expect::Promote,
    ));
    for (i, rps) in CANARY_RPS.iter().enumerate() {
        for (j, (percent, rate)) in OC_ERROR_RATES.iter().enumerate() {
            let candidate = ArmTruth { error_rate: *rate, ..ArmTruth::BASELINE };
            // The example's error-rate margin is 0.002: more harm than that should roll back.
            let harmful = rate - ArmTruth::BASELINE.error_rate > 0.002;
            let expect = if harmful { Expect::Rollback } else { Expect::Promote };
            out.push(canary(
                &format!("canary-{percent}pct-{rps}rps"),
                &format!("canary at {percent}% errors against 0.1%, {rps} req/s"),
                300 + 10 * i as u64 + j as u64,
                f64::from(*rps),
                ArmTruth::BASELINE,
                candidate,
                expect,
            ));
        }
    }
    out
}
