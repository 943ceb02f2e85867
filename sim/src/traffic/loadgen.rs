//! Synthetic users: each has a stable id (`x-user-id`), a user agent (mobile or desktop), a region
//! header and a cookie jar, so that targeting rules and sticky assignment are exercised. They are
//! driven in-process against the [`Dataplane`] (fast, on a virtual clock) or over real HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

use super::cookies::CookieJar;
use super::dataplane::Dataplane;
use super::http::{self, HttpError, HttpTarget};
use super::lag::Tally;
use super::population::Visits;
use super::request::{Outcome, Request, Response};
use super::snapshot::ServiceKey;
use super::view::ClusterView;

pub(crate) const MOBILE_USER_AGENT: &str =
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36";
pub(crate) const DESKTOP_USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

/// Requests in flight at most over HTTP.
const MAX_IN_FLIGHT: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    pub users: usize,
    /// Share of users on a mobile user agent.
    pub mobile_share: f64,
    /// Regions assigned to users uniformly; none: no region header.
    pub regions: Vec<String>,
    pub region_header: String,
    pub path: String,
    pub seed: u64,
    /// Returning users: each user's share of the requests is proportional to an activity drawn
    /// from this visits-per-user distribution, so that visits per user are as spread (E[k²]/E[k])
    /// as it says. `None`: every user equally likely (independent-looking requests).
    pub visits: Option<Visits>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            users: 100,
            mobile_share: 0.0,
            regions: Vec::new(),
            region_header: forklane_core::api::defaults::REGION_HEADER.into(),
            path: "/".into(),
            seed: 1,
            visits: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub mobile: bool,
    pub region: Option<String>,
    pub jar: CookieJar,
}

/// The users and the randomness that picks who sends the next request.
pub struct Population {
    users: Vec<User>,
    /// Cumulative activity per user when `spec.visits` is set.
    activity: Vec<f64>,
    spec: LoadSpec,
    rng: StdRng,
}

impl Population {
    pub fn new(spec: &LoadSpec) -> Self {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let users = (0..spec.users.max(1))
            .map(|i| User {
                id: format!("user-{i:05}"),
                mobile: rng.random_bool(spec.mobile_share.clamp(0.0, 1.0)),
                region: (!spec.regions.is_empty())
                    .then(|| spec.regions[rng.random_range(0..spec.regions.len())].clone()),
                jar: CookieJar::default(),
            })
            .collect();
        let mut total = 0.0;
        let activity = match &spec.visits {
            Some(visits) => (0..spec.users.max(1))
                .map(|_| {
                    total += visits.sample(&mut rng) as f64;
                    total
                })
                .collect(),
            None => Vec::new(),
        };
        Population { users, activity, spec: spec.clone(), rng }
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// A user drawn uniformly, and their next request at `now` (on the load generator's clock).
    pub(crate) fn next_request(&mut self, now: Duration) -> (usize, Request) {
        let user = self.pick_user();
        (user, self.request_for(user, now))
    }

    fn pick_user(&mut self) -> usize {
        match self.activity.last() {
            Some(&total) => {
                let at = self.rng.random::<f64>() * total;
                self.activity.partition_point(|&c| c <= at).min(self.users.len() - 1)
            }
            None => self.rng.random_range(0..self.users.len()),
        }
    }

    /// The next request of user `index` at `now`, with the cookies they hold then.
    fn request_for(&mut self, index: usize, now: Duration) -> Request {
        let user = &mut self.users[index];
        let mut req = Request::get(&self.spec.path)
            .header("x-user-id", &user.id)
            .header("user-agent", if user.mobile { MOBILE_USER_AGENT } else { DESKTOP_USER_AGENT });
        if let Some(region) = &user.region {
            req = req.header(&self.spec.region_header, region);
        }
        if let Some(cookie) = user.jar.header(&self.spec.path, now) {
            req = req.header("cookie", &cookie);
        }
        req
    }

    /// The user's browser takes the answer's cookies.
    pub(crate) fn observe(&mut self, user: usize, response: &Response, now: Duration) {
        for set_cookie in response.header_values("set-cookie") {
            self.users[user].jar.store(set_cookie, &self.spec.path, now);
        }
    }

    /// The randomness for the data plane of an in-process run, derived from the seed.
    fn dataplane_rng(&mut self) -> StdRng {
        StdRng::seed_from_u64(self.rng.random())
    }
}

/// What the clients saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub sent: u64,
    /// Answers by the version in their body (`Host: ..., Version: v`), errors included.
    pub by_version: BTreeMap<String, u64>,
    /// Answers 5xx by version (simulated app errors).
    pub errors_by_version: BTreeMap<String, u64>,
    /// Every answer by status code (the proxy's own 503/404 included).
    pub by_status: BTreeMap<u16, u64>,
    /// Connections refused (no ready endpoint).
    pub refused: u64,
    /// Other transport failures (reset connections, timeouts).
    pub failed: u64,
    pub elapsed: Duration,
    last_version: HashMap<usize, String>,
    /// Users who were answered by more than one version.
    switched: HashSet<usize>,
}

impl Report {
    /// Counts one exchange of `user`.
    pub(crate) fn record(&mut self, user: usize, result: Result<&Response, &HttpError>) {
        self.sent += 1;
        let response = match result {
            Err(HttpError::Refused) => return self.refused += 1,
            Err(HttpError::Failed(_)) => return self.failed += 1,
            Ok(r) => r,
        };
        *self.by_status.entry(response.status).or_default() += 1;
        let Some(version) = response.version() else { return };
        *self.by_version.entry(version.to_string()).or_default() += 1;
        if response.status >= 500 {
            *self.errors_by_version.entry(version.to_string()).or_default() += 1;
        }
        if self.last_version.insert(user, version.to_string()).is_some_and(|previous| previous != version) {
            self.switched.insert(user);
        }
    }

    /// Users who were answered by more than one version (sticky assignment keeps this at 0).
    pub fn users_switched(&self) -> usize {
        self.switched.len()
    }

    /// Share of answered requests per version.
    pub(crate) fn shares(&self) -> BTreeMap<String, f64> {
        let answered: u64 = self.by_version.values().sum();
        self.by_version.iter().map(|(v, n)| (v.clone(), *n as f64 / answered.max(1) as f64)).collect()
    }
}

/// In-process requests to one Service.
struct InProcess<'a, V> {
    dataplane: &'a Dataplane,
    view: &'a V,
    service: &'a ServiceKey,
    rng: StdRng,
    /// Where every outcome is also counted as it happens.
    tally: Option<&'a Mutex<Tally>>,
}

impl<V: ClusterView> InProcess<'_, V> {
    /// The next user's request at `now`, through the user's proxy, and what the user and the
    /// report make of the answer.
    fn send(&mut self, population: &mut Population, report: &mut Report, now: Duration) {
        let (user, req) = population.next_request(now);
        let outcome = self.dataplane.handle_via(&self.view.proxy_view(user), self.service, &req, &mut self.rng);
        if let Some(tally) = self.tally {
            lock(tally).record(&outcome);
        }
        match outcome {
            Outcome::Refused => report.record(user, Err(&HttpError::Refused)),
            Outcome::Answered(answer) => {
                population.observe(user, &answer.response, now);
                report.record(user, Ok(&answer.response));
            }
        }
        report.elapsed = now;
    }
}

/// Sends `requests` requests to `service` in-process, `rps` per second of virtual time (which
/// only ages cookies: nothing sleeps). Reads the view afresh for every request, as the user's
/// proxy sees it.
pub fn run_in_process(
    dataplane: &Dataplane,
    view: &impl ClusterView,
    service: &ServiceKey,
    population: &mut Population,
    requests: u64,
    rps: f64,
) -> Report {
    let mut client = InProcess { dataplane, view, service, rng: population.dataplane_rng(), tally: None };
    let mut report = Report::default();
    for i in 0..requests {
        client.send(population, &mut report, Duration::from_secs_f64(i as f64 / rps));
    }
    report
}

/// Like [`run_in_process`], but paced in real time at `rps` until `limit`, so that metrics grow
/// as a scraping Prometheus (and an analysis reading it) expects: background traffic for demos
/// and end-to-end tests. Sends the requests due every [`PACING`].
pub async fn drive_in_process(
    dataplane: &Dataplane,
    view: &impl ClusterView,
    service: &ServiceKey,
    population: &mut Population,
    rps: f64,
    limit: Limit,
) -> Report {
    drive(InProcess { dataplane, view, service, rng: population.dataplane_rng(), tally: None }, population, rps, limit)
        .await
}

/// Like [`drive_in_process`], counting every outcome into `tally` as it happens, so that it can
/// be read while the traffic runs.
pub async fn drive_in_process_tallied(
    dataplane: &Dataplane,
    view: &impl ClusterView,
    service: &ServiceKey,
    population: &mut Population,
    rps: f64,
    limit: Limit,
    tally: &Mutex<Tally>,
) -> Report {
    let client = InProcess { dataplane, view, service, rng: population.dataplane_rng(), tally: Some(tally) };
    drive(client, population, rps, limit).await
}

async fn drive<V: ClusterView>(
    mut client: InProcess<'_, V>,
    population: &mut Population,
    rps: f64,
    limit: Limit,
) -> Report {
    let mut report = Report::default();
    let (start, mut ticks) = (Instant::now(), tokio::time::interval(PACING));
    loop {
        ticks.tick().await;
        let now = start.elapsed();
        let (cap, done) = match limit {
            Limit::Requests(n) => (n, false),
            Limit::Duration(d) => ((d.as_secs_f64() * rps) as u64, now >= d),
        };
        let due = ((now.as_secs_f64() * rps) as u64).min(cap);
        while report.sent < due {
            client.send(population, &mut report, now);
        }
        if done || report.sent >= cap {
            report.elapsed = now;
            return report;
        }
    }
}

/// How often [`drive_in_process`] sends the requests that are due.
pub(crate) const PACING: Duration = Duration::from_millis(10);

/// How long an HTTP run lasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    Requests(u64),
    Duration(Duration),
}

/// Sends requests over HTTP at `rps` until `limit`, each user's cookies kept between requests.
/// A user, like a browser session, waits for one answer (and its cookies) before the next request.
pub async fn run_http(target: &HttpTarget, population: Population, rps: f64, limit: Limit) -> Report {
    let turns: Arc<Vec<tokio::sync::Mutex<()>>> =
        Arc::new((0..population.users.len()).map(|_| tokio::sync::Mutex::new(())).collect());
    let population = Arc::new(Mutex::new(population));
    let report = Arc::new(Mutex::new(Report::default()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rps.max(0.001)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    loop {
        let done = match limit {
            Limit::Requests(n) => sent >= n,
            Limit::Duration(d) => start.elapsed() >= d,
        };
        if done {
            break;
        }
        ticks.tick().await;
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let user = lock(&population).pick_user();
        let (target, population, report, turns) = (target.clone(), population.clone(), report.clone(), turns.clone());
        tasks.spawn(async move {
            let _turn = turns[user].lock().await;
            let req = lock(&population).request_for(user, start.elapsed());
            let result = http::send(&target, &req).await;
            if let Ok(response) = &result {
                lock(&population).observe(user, response, start.elapsed());
            }
            lock(&report).record(user, result.as_ref());
            drop(permit);
        });
        sent += 1;
    }
    while tasks.join_next().await.is_some() {}
    let mut report = lock(&report).clone();
    report.elapsed = start.elapsed();
    report
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "{} requests in {secs:.1}s ({:.1}/s)", self.sent, self.sent as f64 / secs.max(1e-9))?;
        writeln!(f, "{:<24} {:>8} {:>7} {:>7}", "VERSION", "COUNT", "SHARE", "ERRORS")?;
        let shares = self.shares();
        for (version, count) in &self.by_version {
            let errors = self.errors_by_version.get(version).copied().unwrap_or(0);
            writeln!(f, "{version:<24} {count:>8} {:>6.1}% {errors:>7}", 100.0 * shares[version])?;
        }
        for (status, count) in self.by_status.iter().filter(|(s, _)| ![200, 500].contains(*s)) {
            writeln!(f, "status {status}: {count}")?;
        }
        writeln!(
            f,
            "refused: {}  failed: {}  users who changed version: {}",
            self.refused,
            self.failed,
            self.users_switched()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests per user over many picks, sorted descending.
    fn per_user(spec: &LoadSpec, picks: usize) -> Vec<u64> {
        let mut p = Population::new(spec);
        let mut counts = vec![0u64; spec.users];
        for _ in 0..picks {
            counts[p.pick_user()] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts
    }

    #[test]
    fn returning_users_with_heavy_tailed_visits_send_most_requests_from_few_users() {
        let uniform = LoadSpec { users: 2000, seed: 3, ..LoadSpec::default() };
        let heavy = LoadSpec { visits: Some(Visits::new(3.0, 25.0).unwrap()), ..uniform.clone() };
        let top_share = |c: &[u64]| c[..20].iter().sum::<u64>() as f64 / c.iter().sum::<u64>() as f64;
        let (u, h) = (per_user(&uniform, 200_000), per_user(&heavy, 200_000));
        assert!(top_share(&u) < 0.02, "uniform users: top 1% send {}", top_share(&u));
        assert!(top_share(&h) > 0.15, "heavy-tailed users: top 1% send {}", top_share(&h));
    }
}
