//! The clock Forklane reads. The controller's pauses and analysis intervals, and every time the
//! simulator writes into an object (condition times, `startedAt`, ...) or delay it honours (probe
//! delays, grace periods, `minReadySeconds`, progress deadlines), come from one `Clock`, which runs
//! at real speed by default or faster for tests and demos.

use jiff::{SignedDuration, Timestamp};
use std::time::{Duration, Instant};

/// A point in simulated time.
pub type Time = Timestamp;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_real: Instant,
    origin_sim: Timestamp,
    speed: f64,
}

impl Clock {
    /// Wall-clock time.
    pub fn real() -> Self {
        Clock::scaled(1.0)
    }

    /// Starts at the current wall-clock time and then runs `speed` times faster:
    /// `Clock::scaled(20.0)` turns a 30 s progress deadline into 1.5 s of waiting.
    pub fn scaled(speed: f64) -> Self {
        assert!(speed.is_finite() && speed > 0.0, "clock speed must be positive, got {speed}");
        Clock { origin_real: Instant::now(), origin_sim: Timestamp::now(), speed }
    }

    pub fn now(&self) -> Time {
        self.time_at(Instant::now())
    }

    /// The simulated time at the real instant `at` (before the clock started, too).
    pub fn time_at(&self, at: Instant) -> Time {
        let real = match at.checked_duration_since(self.origin_real) {
            Some(after) => after.as_secs_f64(),
            None => -self.origin_real.duration_since(at).as_secs_f64(),
        };
        self.origin_sim + SignedDuration::from_secs_f64(real * self.speed)
    }

    /// The real time to wait until the simulated time `t` (zero if it has passed).
    pub fn real_until(&self, t: Time) -> Duration {
        let sim = self.now().duration_until(t).as_secs_f64();
        Duration::from_secs_f64((sim / self.speed).max(0.0))
    }

    /// A simulated duration in real time, e.g. for test timeouts.
    pub fn real_duration(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.speed)
    }
}

/// `metav1.Time` serialisation: RFC 3339 in whole seconds (Kubernetes truncates, so a
/// condition written at 12:00:00.9 reads back as 12:00:00).
pub fn format_time(t: Time) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_time(s: &str) -> Option<Time> {
    s.parse().ok()
}

/// `t` plus whole seconds.
pub fn add_secs(t: Time, secs: i64) -> Time {
    t + SignedDuration::from_secs(secs)
}

/// Truncates to whole seconds, as a round trip through an object does.
pub fn truncate(t: Time) -> Time {
    Timestamp::from_second(t.as_second()).expect("in range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_runs_faster() {
        let c = Clock::scaled(1000.0);
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = t0.duration_until(c.now()).as_secs_f64();
        assert!(elapsed >= 19.0, "20 ms real at x1000 is ≥ 19 s simulated, got {elapsed}");
        let wait = c.real_until(add_secs(c.now(), 10));
        assert!(wait <= Duration::from_millis(11), "10 s simulated ≈ 10 ms real, got {wait:?}");
    }

    #[test]
    fn a_past_instant_maps_to_its_simulated_time() {
        let c = Clock::scaled(100.0);
        let before = Instant::now();
        let at = before + Duration::from_millis(30);
        let gap = c.time_at(before).duration_until(c.time_at(at)).as_secs_f64();
        assert!((gap - 3.0).abs() < 1e-6, "30 ms real at x100 is 3 s simulated, got {gap}");
        let earlier = c.origin_real.checked_sub(Duration::from_millis(10)).expect("the machine has been up 10 ms");
        assert_eq!(c.time_at(earlier).duration_until(c.origin_sim).as_secs_f64().round(), 1.0, "before the start");
    }

    #[test]
    fn times_round_trip_in_whole_seconds() {
        let t: Time = "2024-05-01T10:00:00.900Z".parse().unwrap();
        assert_eq!(format_time(t), "2024-05-01T10:00:00Z");
        assert_eq!(parse_time(&format_time(t)), Some(truncate(t)));
    }
}
