//! Fault injection for reliability tests: a share of writes failing with 500 or 409, a share
//! of requests throttled with 429 and `Retry-After`, a delay before every response, and
//! cutting watch streams (at once or after a lifetime).
//! Set from Rust (`Cluster::faults()`) or over HTTP at `/forklane/faults` (GET/PUT JSON,
//! same bearer token; `POST /forklane/faults/cut-watches` cuts every open watch).

use crate::cluster::error::Error;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Share of create/update/patch/delete requests that fail, 0.0..=1.0.
    pub write_error_rate: f64,
    /// 500 (InternalError) or 409 (Conflict).
    pub write_error_code: u16,
    /// Added before every API response, in milliseconds.
    pub delay_ms: u64,
    /// Watch streams end after this many milliseconds.
    pub watch_lifetime_ms: Option<u64>,
    /// Share of requests (any verb; not health probes or `/forklane/faults`) answered with
    /// 429 TooManyRequests, as by the apiserver's flow control, 0.0..=1.0.
    pub throttle_rate: f64,
    /// The `Retry-After` of throttled requests, in seconds, 1..=`MAX_RETRY_AFTER_SECONDS`.
    pub retry_after_seconds: u64,
}

/// The longest `Retry-After` a throttled request may be given: an hour.
const MAX_RETRY_AFTER_SECONDS: u64 = 3600;

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings {
            write_error_rate: 0.0,
            write_error_code: 500,
            delay_ms: 0,
            watch_lifetime_ms: None,
            throttle_rate: 0.0,
            retry_after_seconds: 1,
        }
    }
}

struct Shared {
    settings: RwLock<FaultSettings>,
    /// Bumped to cut every open watch.
    cuts: watch::Sender<u64>,
}

/// Handle to the fault settings of one cluster.
#[derive(Clone)]
pub struct Faults(Arc<Shared>);

impl Default for Faults {
    fn default() -> Self {
        Faults(Arc::new(Shared { settings: RwLock::new(FaultSettings::default()), cuts: watch::channel(0).0 }))
    }
}

impl Faults {
    pub(crate) fn settings(&self) -> FaultSettings {
        self.0.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the settings; rejects an error code other than 500/409, a rate outside 0..=1
    /// or a `Retry-After` outside 1..=`MAX_RETRY_AFTER_SECONDS`.
    pub fn set(&self, settings: FaultSettings) -> Result<(), String> {
        if !(0.0..=1.0).contains(&settings.write_error_rate) {
            return Err(format!("writeErrorRate must be within 0..=1, got {}", settings.write_error_rate));
        }
        if settings.write_error_code != 500 && settings.write_error_code != 409 {
            return Err(format!("writeErrorCode must be 500 or 409, got {}", settings.write_error_code));
        }
        if !(0.0..=1.0).contains(&settings.throttle_rate) {
            return Err(format!("throttleRate must be within 0..=1, got {}", settings.throttle_rate));
        }
        if !(1..=MAX_RETRY_AFTER_SECONDS).contains(&settings.retry_after_seconds) {
            return Err(format!(
                "retryAfterSeconds must be within 1..={MAX_RETRY_AFTER_SECONDS}, got {}",
                settings.retry_after_seconds
            ));
        }
        *self.0.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
        Ok(())
    }

    pub fn clear(&self) {
        *self.0.settings.write().unwrap_or_else(|e| e.into_inner()) = FaultSettings::default();
    }

    /// Ends every watch stream open now; clients see the stream close and resume.
    pub fn cut_watches(&self) {
        self.0.cuts.send_modify(|n| *n += 1);
    }

    pub(crate) fn cut_signal(&self) -> watch::Receiver<u64> {
        self.0.cuts.subscribe()
    }

    pub(crate) fn delay(&self) -> Option<Duration> {
        let ms = self.settings().delay_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    pub(crate) fn watch_lifetime(&self) -> Option<Duration> {
        self.settings().watch_lifetime_ms.map(Duration::from_millis)
    }

    /// The injected 429 for this request, if the dice say so.
    pub(crate) fn throttle(&self) -> Option<Error> {
        let s = self.settings();
        if s.throttle_rate <= 0.0 || rand::random::<f64>() >= s.throttle_rate {
            return None;
        }
        Some(Error::TooManyRequests { retry_after_seconds: s.retry_after_seconds })
    }

    /// The injected failure for this write, if the dice say so.
    pub(crate) fn write_failure(&self) -> Option<Error> {
        let s = self.settings();
        if s.write_error_rate <= 0.0 || rand::random::<f64>() >= s.write_error_rate {
            return None;
        }
        Some(if s.write_error_code == 409 {
            Error::Conflict {
                message: "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected fault)".into(),
                details: serde_json::Value::Null,
            }
        } else {
            Error::Internal("injected fault".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_hits_its_share_of_requests() {
        let faults = Faults::default();
        assert!(faults.throttle().is_none());
        faults.set(FaultSettings { throttle_rate: 0.5, retry_after_seconds: 3, ..Default::default() }).unwrap();
        let throttled: Vec<Error> = (0..10_000).filter_map(|_| faults.throttle()).collect();
        assert!((4_500..=5_500).contains(&throttled.len()), "{}", throttled.len());
        assert!(matches!(throttled[0], Error::TooManyRequests { retry_after_seconds: 3 }));
        assert_eq!(throttled[0].code(), 429);
    }

    #[test]
    fn bad_throttling_settings_are_refused_naming_the_field() {
        let faults = Faults::default();
        let nan = faults.set(FaultSettings { throttle_rate: f64::NAN, ..Default::default() }).unwrap_err();
        assert_eq!(nan, "throttleRate must be within 0..=1, got NaN");
        let zero = faults.set(FaultSettings { retry_after_seconds: 0, ..Default::default() }).unwrap_err();
        assert_eq!(zero, "retryAfterSeconds must be within 1..=3600, got 0");
        assert_eq!(faults.settings(), FaultSettings::default());
    }
}
