//! Statistics engine: classical tests, always-valid sequential inference, Bayesian
//! comparisons and the promotion decision built on them.
//!
//! Everything here is a pure function of counts and summary statistics: no I/O, no clock,
//! no global state. The controller calls [`decision::decide`]; `forklane stats eval`
//! reaches every method through [`vectors::eval`].

mod batches;
pub(crate) mod bayes;
mod compare;
pub mod decision;
pub(crate) mod histogram;
pub(crate) mod mann_whitney;
pub(crate) mod multiple;
mod noninferiority;
mod normal;
pub mod plan;
pub(crate) mod power;
pub(crate) mod proportions;
pub(crate) mod sequential;
pub mod simulation;
pub(crate) mod srm;
pub(crate) mod threshold_rule;
pub mod vectors;
pub(crate) mod welch;

use serde::{Deserialize, Serialize};

/// Why a statistic could not be computed. Insufficient data is not an error: the
/// decision function answers it with `Continue`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("unknown test `{0}`")]
    UnknownTest(String),
}

pub type Result<T> = std::result::Result<T, StatsError>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(StatsError::InvalidInput(msg.into()))
}

/// Alternative hypothesis, named after the first sample (or the treatment arm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Alternative {
    #[default]
    TwoSided,
    /// The first sample is larger (statsmodels calls it `larger`).
    Greater,
    /// The first sample is smaller (statsmodels: `smaller`).
    Less,
}

impl std::str::FromStr for Alternative {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "two-sided" | "twoSided" | "two_sided" => Ok(Self::TwoSided),
            "greater" | "larger" => Ok(Self::Greater),
            "less" | "smaller" => Ok(Self::Less),
            other => invalid(format!("alternative `{other}` is not one of two-sided, greater/larger, less/smaller")),
        }
    }
}

impl Alternative {
    /// p-value of a statistic that is standard normal under the null.
    pub(crate) fn p_from_z(self, z: f64) -> f64 {
        match self {
            Self::TwoSided => (2.0 * normal::sf(z.abs())).min(1.0),
            Self::Greater => normal::sf(z),
            Self::Less => normal::cdf(z),
        }
    }
}
