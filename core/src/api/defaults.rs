//! Every default of the API in one place: what an omitted field means. The CRD schema does not
//! carry these (the API server stores what the user wrote); the controller and the CLI apply them
//! through the accessors that name them (`Analysis::interval()`, `AbTest::region_header()`, ...).

use std::time::Duration;

use super::{Routing, SameSite};

/// `spec.analysis.alpha`: the decision's error rate.
pub(crate) const ANALYSIS_ALPHA: f64 = 0.05;

/// `spec.analysis.interval`: how often the metrics are read and tested.
pub(crate) const ANALYSIS_INTERVAL: Duration = Duration::from_secs(60);

/// How long one look may take: every metric of every arm is read at once, and what has not
/// answered by then counts as unavailable (the weights are held and the look retried).
pub(crate) const ANALYSIS_DEADLINE: Duration = Duration::from_secs(30);

/// `spec.analysis.maxDuration`: after this long without a decision, `onInconclusive` applies.
pub(crate) const ANALYSIS_MAX_DURATION: Duration = Duration::from_secs(24 * 3_600);

/// `spec.analysis.maxConsecutiveUnavailable`: looks in a row without metrics before giving up.
pub(crate) const MAX_CONSECUTIVE_UNAVAILABLE: u32 = 5;

/// `spec.progressDeadline`: the longest wait for pods or routing (Flagger's and Argo Rollouts').
pub(crate) const PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// `spec.routing.propagationDelay`: how long a routing write takes to reach every proxy. Istio's
/// pushes usually land within a second; this covers a loaded istiod and a straggler seconds late
/// (the lag tests' slowest proxy gets clusters 5 s late).
pub(crate) const PROPAGATION_DELAY: Duration = Duration::from_secs(8);

/// `spec.routing.scaleDownDelay`: Argo Rollouts' default `scaleDownDelaySeconds`.
pub(crate) const SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

/// The measurement window when the analysis' start is not recorded (`{{ window }}`).
pub(crate) const MEASUREMENT_WINDOW: Duration = Duration::from_secs(60);

/// The shortest measurement window: PromQL ranges are whole seconds.
pub(crate) const MIN_MEASUREMENT_WINDOW: Duration = Duration::from_secs(1);

/// `spec.strategy.abTest.regionHeader`: the request header that carries the client's region.
pub const REGION_HEADER: &str = "x-region";

/// `spec.strategy.abTest.sticky.maxAgeSeconds`: one day.
pub(crate) const STICKY_MAX_AGE_SECONDS: i64 = 86_400;

/// `spec.strategy.abTest.sticky.sameSite`: sent with top-level navigations, as browsers default to.
pub(crate) const STICKY_SAME_SITE: SameSite = SameSite::Lax;

/// The longest time answers keep expiring the sticky cookie once the experiment has ended (or
/// `maxAgeSeconds`, when shorter: no cookie set before the end outlives it).
pub(crate) const STICKY_EXPIRY_PERIOD: Duration = Duration::from_secs(24 * 3_600);

/// `spec.strategy.rollingUpdate.maxSurge`, as a Deployment's (rounded up).
pub(crate) const ROLLING_MAX_SURGE: &str = "25%";

/// `spec.strategy.rollingUpdate.maxUnavailable`, as a Deployment's (rounded down).
pub(crate) const ROLLING_MAX_UNAVAILABLE: &str = "25%";

/// A Deployment without `spec.replicas` runs one pod (Kubernetes' default).
pub(crate) const DEPLOYMENT_REPLICAS: i32 = 1;

/// What `mesh: auto` means offline (`forklane render` and `validate`), where nothing can be
/// discovered: the Istio objects, the richer plan.
pub const OFFLINE_ROUTING: Routing = Routing::Istio;

/// Serde's form of [`STICKY_MAX_AGE_SECONDS`].
pub(super) fn sticky_max_age_seconds() -> i64 {
    STICKY_MAX_AGE_SECONDS
}
