//! One simulated world per experiment: users arrive, are split by the current weights, come back
//! as the traffic model says, and every tick adds what they did to the counters, labelled as the
//! mesh and the apps label them. Draws are per tick and per user or pod (exact binomial and
//! Poisson counts), never per request.

use std::time::Duration;

use forklane_core::stats::simulation::binomial;
use rand::Rng;
use rand::rngs::StdRng;

use crate::traffic::metrics::ISTIO_DURATION_BUCKETS_MS as BUCKETS_MS;
use crate::traffic::population::poisson;

use super::counters::{Counters, Labels};
use super::scenarios::{ArmTruth, Traffic};

/// z of the 99th percentile of a standard normal.
const Z_99: f64 = 2.326_347_874_040_841;

/// The labels of one arm, from its spec.
pub(crate) struct ArmLabels {
    pub version: String,
    pub app: String,
    pub workload: String,
}

struct Pod {
    error_rate: f64,
    median_ms: f64,
}

struct Arm {
    labels: ArmLabels,
    truth: ArmTruth,
    pods: Vec<Pod>,
    /// The arm's mean error rate over its pods.
    error_rate: f64,
}

/// A returning user: their arm and conversion propensity.
struct User {
    arm: usize,
    propensity: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cohort {
    Assigned,
    Returning,
    Targeted,
}

impl Cohort {
    fn label(self) -> &'static str {
        match self {
            Cohort::Assigned => "assigned",
            Cohort::Returning => "returning",
            Cohort::Targeted => "targeted",
        }
    }
}

pub(crate) struct World {
    traffic: Traffic,
    service: String,
    namespace: String,
    arms: Vec<Arm>,
    sticky: bool,
    latency: bool,
    users: Vec<User>,
    /// Later visits per future tick: (user, visits).
    calendar: Vec<Vec<(u32, u32)>>,
    tick: Duration,
    /// Ticks done.
    now: usize,
    rng: StdRng,
}

/// What one arm got in one tick and cohort.
#[derive(Default, Clone, Copy)]
pub(crate) struct Served {
    pub requests: u64,
    pub errors: u64,
}

pub(crate) struct Setup<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    pub arms: Vec<(ArmLabels, ArmTruth)>,
    pub sticky: bool,
    /// Whether to fill the latency histograms (only when a metric reads them).
    pub latency: bool,
    pub tick: Duration,
    pub horizon: Duration,
}

impl World {
    pub(crate) fn new(traffic: Traffic, setup: Setup, mut rng: StdRng) -> Self {
        let arms = setup
            .arms
            .into_iter()
            .map(|(labels, truth)| {
                let pods: Vec<Pod> = (0..traffic.pods_per_arm.max(1))
                    .map(|_| {
                        let (error_rate, median_ms) = traffic.pods.pod(&mut rng, truth.error_rate, truth.median_ms);
                        Pod { error_rate, median_ms }
                    })
                    .collect();
                let error_rate = pods.iter().map(|p| p.error_rate).sum::<f64>() / pods.len() as f64;
                Arm { labels, truth, pods, error_rate }
            })
            .collect();
        let ticks = (setup.horizon.as_secs_f64() / setup.tick.as_secs_f64()).ceil() as usize + 1;
        World {
            traffic,
            service: setup.service.into(),
            namespace: setup.namespace.into(),
            arms,
            sticky: setup.sticky,
            latency: setup.latency,
            users: Vec::new(),
            calendar: vec![Vec::new(); ticks],
            tick: setup.tick,
            now: 0,
            rng,
        }
    }

    /// One tick of traffic under `weights` (per arm, in spec order); returns what each arm served.
    pub(crate) fn step(&mut self, weights: &[f64], counters: &mut Counters) -> Vec<Served> {
        let at = self.traffic.start_of_day + self.tick * self.now as u32;
        let rate = self.traffic.rps * self.tick.as_secs_f64() * self.traffic.modulation.sample(&mut self.rng, at);
        let mut served = vec![Served::default(); self.arms.len()];
        // First visits, split by the weights (a multinomial by successive binomials).
        let per_user = if self.sticky { self.traffic.visits.mean() } else { 1.0 };
        let mut left = poisson(&mut self.rng, rate / per_user);
        let mut mass: f64 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let n = if mass <= 0.0 { 0 } else { binomial(&mut self.rng, left, (w / mass).min(1.0)) };
            left -= n;
            mass -= w;
            if n > 0 {
                self.first_visits(i, n, &mut served, counters);
            }
        }
        let targeted = poisson(&mut self.rng, rate * self.traffic.targeted_share);
        if targeted > 0 && self.arms.len() > 1 {
            let p = self.arms[1].truth.conversion;
            self.visits(1, Cohort::Targeted, targeted, Some(p), &mut served, counters);
        }
        self.returning_visits(&mut served, counters);
        self.now += 1;
        counters.end_tick();
        served
    }

    fn first_visits(&mut self, arm: usize, n: u64, served: &mut [Served], counters: &mut Counters) {
        let truth = self.arms[arm].truth;
        if !self.sticky || self.traffic.visits.mean() == 1.0 {
            // Each first visit converts with the arm's mean: a Beta-distributed propensity drawn
            // once per user mixes into exactly that Bernoulli.
            return self.visits(arm, Cohort::Assigned, n, Some(truth.conversion), served, counters);
        }
        let mut orders = 0;
        let (_, ok) = self.requests(arm, Cohort::Assigned, n, served, counters);
        let keep = 1.0 - self.arms[arm].error_rate;
        for _ in 0..n {
            let k = self.traffic.visits.sample(&mut self.rng);
            let propensity = self.traffic.propensity(truth.conversion).sample(&mut self.rng);
            orders += self.rng.random_bool((propensity * keep).clamp(0.0, 1.0)) as u64;
            if k > 1 {
                self.schedule(arm, propensity, k);
            }
        }
        self.app_counters(arm, Cohort::Assigned, ok, orders, counters);
    }

    /// Puts a new user's later visits on the calendar (visits after the horizon are dropped).
    fn schedule(&mut self, arm: usize, propensity: f64, k: u64) {
        let id = self.users.len() as u32;
        self.users.push(User { arm, propensity });
        let within = self.rng.random::<f64>() * self.tick.as_secs_f64();
        let tick = self.tick.as_secs_f64();
        let mut last: Option<usize> = None;
        for offset in self.traffic.returns.offsets(&mut self.rng, k) {
            let t = self.now + ((within + offset.as_secs_f64()) / tick) as usize;
            // A visit in the same tick as the first one is a page of the same first exposure:
            // it still comes back through the sticky route, so it counts as returning next tick.
            let t = t.max(self.now + 1);
            let Some(slot) = self.calendar.get_mut(t) else { break };
            match (last == Some(t), slot.last_mut()) {
                (true, Some(entry)) => entry.1 += 1,
                _ => slot.push((id, 1)),
            }
            last = Some(t);
        }
    }

    fn returning_visits(&mut self, served: &mut [Served], counters: &mut Counters) {
        let Some(due) = self.calendar.get_mut(self.now).map(std::mem::take) else { return };
        let mut per_arm = vec![(0u64, 0u64); self.arms.len()];
        for (id, m) in due {
            let user = &self.users[id as usize];
            let keep = 1.0 - self.arms[user.arm].error_rate;
            let orders = binomial(&mut self.rng, u64::from(m), (user.propensity * keep).clamp(0.0, 1.0));
            per_arm[user.arm].0 += u64::from(m);
            per_arm[user.arm].1 += orders;
        }
        for (arm, (n, orders)) in per_arm.into_iter().enumerate() {
            if n > 0 {
                let (_, ok) = self.requests(arm, Cohort::Returning, n, served, counters);
                self.app_counters(arm, Cohort::Returning, ok, orders.min(ok), counters);
            }
        }
    }

    /// `n` visits that convert at `conversion` (of the answered ones).
    fn visits(
        &mut self,
        arm: usize,
        cohort: Cohort,
        n: u64,
        conversion: Option<f64>,
        served: &mut [Served],
        counters: &mut Counters,
    ) {
        let (_, ok) = self.requests(arm, cohort, n, served, counters);
        let orders = conversion.map_or(0, |p| binomial(&mut self.rng, ok, p));
        self.app_counters(arm, cohort, ok, orders, counters);
    }

    /// `n` requests spread evenly over the arm's pods: the mesh's counters and histogram.
    /// Returns (errors, answered without error).
    fn requests(
        &mut self,
        arm: usize,
        cohort: Cohort,
        n: u64,
        served: &mut [Served],
        counters: &mut Counters,
    ) -> (u64, u64) {
        let pods = self.arms[arm].pods.len();
        let (mut left, mut errors) = (n, 0);
        let mut buckets = vec![0u64; if self.latency { BUCKETS_MS.len() } else { 0 }];
        for (j, pod) in self.arms[arm].pods.iter().enumerate() {
            let on_pod = binomial(&mut self.rng, left, 1.0 / (pods - j) as f64);
            left -= on_pod;
            errors += binomial(&mut self.rng, on_pod, pod.error_rate);
            if self.latency {
                let sigma = (self.arms[arm].truth.p99_ms / self.arms[arm].truth.median_ms).ln() / Z_99;
                let cdf = |b: f64| normal_cdf((b.ln() - pod.median_ms.ln()) / sigma);
                // Successive binomials: how many of those above the last bound fall below the next.
                let (mut above, mut below, mut prev) = (on_pod, 0u64, 0.0);
                for (k, &bound) in BUCKETS_MS.iter().enumerate() {
                    let f = cdf(bound);
                    let p = if prev >= 1.0 { 1.0 } else { ((f - prev) / (1.0 - prev)).clamp(0.0, 1.0) };
                    let fell = binomial(&mut self.rng, above, p);
                    above -= fell;
                    below += fell;
                    buckets[k] += below;
                    prev = f;
                }
            }
        }
        served[arm].requests += n;
        served[arm].errors += errors;
        let ok = n - errors;
        let labels = |code: &str| self.istio_labels(arm, cohort, code);
        let (ok_labels, error_labels) = (labels("200"), labels("500"));
        counters.add("istio_requests_total", ok_labels.clone(), ok as f64);
        counters.add("istio_requests_total", error_labels, errors as f64);
        if self.latency {
            counters.add("istio_request_duration_milliseconds_count", ok_labels.clone(), n as f64);
            for (bound, count) in BUCKETS_MS.iter().zip(buckets) {
                let mut l = ok_labels.clone();
                l.push(("le", format!("{bound}")));
                counters.add("istio_request_duration_milliseconds_bucket", l, count as f64);
            }
        }
        (errors, ok)
    }

    fn istio_labels(&self, arm: usize, cohort: Cohort, code: &str) -> Labels {
        let a = &self.arms[arm].labels;
        vec![
            ("reporter", "destination".into()),
            ("destination_service_name", self.service.clone()),
            ("destination_service_namespace", self.namespace.clone()),
            ("destination_workload", a.workload.clone()),
            ("destination_workload_namespace", self.namespace.clone()),
            ("destination_app", a.app.clone()),
            ("destination_version", a.version.clone()),
            ("destination_canonical_service", a.app.clone()),
            ("request_protocol", "http".into()),
            ("response_code", code.into()),
            ("response_flags", "-".into()),
            ("forklane_cohort", cohort.label().into()),
        ]
    }

    /// The app's own counters: `visits_total` counts answered visits, `orders_total` conversions.
    fn app_counters(&self, arm: usize, cohort: Cohort, visits: u64, orders: u64, counters: &mut Counters) {
        let a = &self.arms[arm].labels;
        let labels = vec![
            ("namespace", self.namespace.clone()),
            ("app", a.app.clone()),
            ("version", a.version.clone()),
            ("forklane_cohort", cohort.label().to_string()),
        ];
        counters.add("visits_total", labels.clone(), visits as f64);
        counters.add("orders_total", labels, orders as f64);
    }
}

/// Φ(x).
fn normal_cdf(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}
