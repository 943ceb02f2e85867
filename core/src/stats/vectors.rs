//! Evaluation by name, for `forklane stats eval` and the reference-vector tests. Test,
//! input and output names are those of `tests/reference/stats/vectors.json`; a few
//! extra tests (`sequential_srm`, `sample_size_two_proportions`, `decide`) expose the
//! rest of the engine the same way.

use super::decision::{self, DecisionConfig, DecisionInput};
use super::histogram::{self, Histogram};
use super::{Alternative, Result, StatsError, invalid};
use super::{bayes, mann_whitney, multiple, power, proportions, sequential, srm, threshold_rule, welch};
use serde_json::{Map, Value, json};

/// Typed access to one entry's `inputs`, with errors that name the offending input.
struct Inputs<'a>(&'a Map<String, Value>);

impl<'a> Inputs<'a> {
    fn get(&self, name: &str) -> Result<&'a Value> {
        self.0.get(name).ok_or_else(|| StatsError::InvalidInput(format!("missing input `{name}`")))
    }

    fn num(&self, name: &str) -> Result<f64> {
        match self.get(name)?.as_f64() {
            Some(v) if v.is_finite() => Ok(v),
            _ => invalid(format!("input `{name}` must be a finite number")),
        }
    }

    fn count(&self, name: &str) -> Result<u64> {
        as_count(self.get(name)?)
            .ok_or_else(|| StatsError::InvalidInput(format!("input `{name}` must be a non-negative integer")))
    }

    fn nums(&self, name: &str) -> Result<Vec<f64>> {
        let bad = || StatsError::InvalidInput(format!("input `{name}` must be an array of finite numbers"));
        let arr = self.get(name)?.as_array().ok_or_else(bad)?;
        arr.iter().map(|v| v.as_f64().filter(|f| f.is_finite()).ok_or_else(bad)).collect()
    }

    fn counts(&self, name: &str) -> Result<Vec<u64>> {
        let bad = || StatsError::InvalidInput(format!("input `{name}` must be an array of non-negative integers"));
        let arr = self.get(name)?.as_array().ok_or_else(bad)?;
        arr.iter().map(|v| as_count(v).ok_or_else(bad)).collect()
    }

    /// Histogram bounds: numbers, or the string "+Inf".
    fn bounds(&self, name: &str) -> Result<Vec<f64>> {
        let bad = || StatsError::InvalidInput(format!("input `{name}` must hold numbers or \"+Inf\""));
        let arr = self.get(name)?.as_array().ok_or_else(bad)?;
        arr.iter()
            .map(|v| match v {
                Value::String(s) if s == "+Inf" => Ok(f64::INFINITY),
                _ => v.as_f64().ok_or_else(bad),
            })
            .collect()
    }

    fn text_or(&self, name: &str, default: &'a str) -> Result<&'a str> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| StatsError::InvalidInput(format!("input `{name}` must be a string"))),
        }
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => {
                v.as_bool().ok_or_else(|| StatsError::InvalidInput(format!("input `{name}` must be true or false")))
            }
        }
    }

    fn num_or(&self, name: &str, default: f64) -> Result<f64> {
        if self.0.contains_key(name) { self.num(name) } else { Ok(default) }
    }

    fn alternative(&self) -> Result<Alternative> {
        self.text_or("alternative", "two-sided")?.parse()
    }

    fn histogram(&self, le: &[f64], name: &str) -> Result<Histogram> {
        Histogram::new(le.to_vec(), self.nums(name)?).map_err(|e| StatsError::InvalidInput(format!("`{name}`: {e}")))
    }
}

/// Integers written as `150` or `150.0` are both accepted.
fn as_count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19).map(|f| f as u64))
}

/// Evaluates every entry of a JSON array of `{"test", "inputs"}` objects, in order.
/// Returns the output array and whether every entry succeeded.
pub fn eval(entries: &Value) -> (Value, bool) {
    let Some(arr) = entries.as_array() else {
        return (json!([{"error": "expected a JSON array of {\"test\", \"inputs\"} objects"}]), false);
    };
    let mut ok = true;
    let out = arr
        .iter()
        .map(|entry| {
            let test = entry.get("test").and_then(Value::as_str);
            let result = match (test, entry.get("inputs").and_then(Value::as_object)) {
                (Some(t), Some(inputs)) => eval_one(t, inputs),
                (None, _) => invalid("entry has no string `test`"),
                (Some(_), None) => invalid("entry has no object `inputs`"),
            };
            match result {
                Ok(outputs) => json!({"test": test, "outputs": outputs}),
                Err(e) => {
                    ok = false;
                    json!({"test": test, "error": e.to_string()})
                }
            }
        })
        .collect();
    (Value::Array(out), ok)
}

/// Evaluates one named test.
pub(crate) fn eval_one(test: &str, inputs: &Map<String, Value>) -> Result<Value> {
    let i = Inputs(inputs);
    match test {
        "two_proportion_ztest_pooled" => {
            let r = proportions::two_proportion_ztest(
                i.count("x1")?,
                i.count("n1")?,
                i.count("x2")?,
                i.count("n2")?,
                i.alternative()?,
            )?;
            Ok(json!({"z": r.z, "p_value": r.p_value, "pooled_p": r.pooled_p, "se": r.se}))
        }
        "welch_ttest_from_summary" => {
            let a = welch::Summary { mean: i.num("mean1")?, variance: i.num("var1")?, n: i.count("n1")? };
            let b = welch::Summary { mean: i.num("mean2")?, variance: i.num("var2")?, n: i.count("n2")? };
            let r = welch::welch_ttest(a, b, i.alternative()?)?;
            Ok(json!({"t": r.t, "df": r.df, "p_value": r.p_value, "se": r.se}))
        }
        "mann_whitney_u" => {
            let method = i.text_or("method", "asymptotic")?;
            if method != "asymptotic" {
                return invalid(format!("method `{method}`: only `asymptotic` is implemented"));
            }
            let r = mann_whitney::from_samples(&i.nums("x")?, &i.nums("y")?)?;
            Ok(json!({"U1": r.u1, "p_value": r.p_value(i.alternative()?, i.bool_or("use_continuity", true)?)}))
        }
        "mann_whitney_u_from_histogram_buckets" => {
            let le = i.bounds("le")?;
            let r = mann_whitney::from_histograms(
                &i.histogram(&le, "canary_cumulative")?,
                &i.histogram(&le, "baseline_cumulative")?,
            )?;
            let cc = i.bool_or("use_continuity", true)?;
            Ok(
                json!({"U1": r.u1, "p_value_two_sided": r.p_value(Alternative::TwoSided, cc), "p_value_greater": r.p_value(Alternative::Greater, cc), "prob_superiority_U1_over_n1n2": r.prob_superiority()}),
            )
        }
        "chi2_contingency_histogram_buckets" => {
            let (a, b) = (i.nums("canary_counts")?, i.nums("baseline_counts")?);
            if !i.bool_or("drop_zero_columns", true)? && a.iter().zip(&b).any(|(x, y)| x + y == 0.0) {
                return invalid("a bucket is empty in both histograms; set drop_zero_columns");
            }
            let r = histogram::homogeneity(&a, &b, i.bool_or("yates", false)?)?;
            Ok(json!({"chi2": r.chi2, "dof": r.dof, "p_value": r.p_value, "G": r.g, "p_value_G": r.p_value_g}))
        }
        "prometheus_histogram_quantile" => {
            let le = i.bounds("le")?;
            let qs = if inputs.contains_key("quantiles") { i.nums("quantiles")? } else { vec![0.5, 0.9, 0.99] };
            let (canary, baseline) = (i.histogram(&le, "canary_cumulative")?, i.histogram(&le, "baseline_cumulative")?);
            let mut out = Map::new();
            for q in qs {
                out.insert(q.to_string(), json!({"canary": canary.quantile(q)?, "baseline": baseline.quantile(q)?}));
            }
            Ok(Value::Object(out))
        }
        "srm_chi2_gof" => {
            let r = srm::chi2_gof(&i.counts("observed")?, &i.nums("weights")?)?;
            Ok(json!({"chi2": r.chi2, "dof": r.dof, "p_value": r.p_value, "srm_at_0.001": r.p_value < 0.001}))
        }
        "sequential_srm" => {
            let r = srm::sequential(
                &i.counts("observed")?,
                &i.nums("weights")?,
                i.num_or("concentration", srm::DEFAULT_CONCENTRATION)?,
            )?;
            Ok(json!({"ln_bayes_factor": r.ln_bayes_factor, "p_value": r.p_value}))
        }
        "beta_binomial_prob_b_beats_a" => {
            let prior = if inputs.contains_key("prior") { i.nums("prior")? } else { vec![1.0, 1.0] };
            let [pa, pb] = prior[..] else { return invalid("input `prior` must be [alpha, beta]") };
            let a = bayes::BetaPosterior::from_counts(i.count("conv_A")?, i.count("n_A")?, [pa, pb])?;
            let b = bayes::BetaPosterior::from_counts(i.count("conv_B")?, i.count("n_B")?, [pa, pb])?;
            let r = bayes::compare(a, b);
            Ok(
                json!({"posterior_A": [a.alpha, a.beta], "posterior_B": [b.alpha, b.beta], "p_b_gt_a": r.p_b_gt_a, "expected_loss_choose_B": r.expected_loss_choose_b, "expected_loss_choose_A": r.expected_loss_choose_a}),
            )
        }
        "msprt_normal_mixture_two_proportions" => {
            let d = sequential::proportion_difference(
                i.count("x_control")?,
                i.count("n_control")?,
                i.count("x_treatment")?,
                i.count("n_treatment")?,
            )?;
            let theta0 = i.num_or("theta0", 0.0)?;
            let r = sequential::msprt(d, i.num("tau2")?, theta0, i.num_or("alpha_for_cs", 0.05)?)?;
            let z = (d.estimate - theta0) / d.variance.sqrt();
            Ok(
                json!({"theta_hat": d.estimate, "V": d.variance, "Lambda": r.ln_lambda.exp(), "always_valid_p": r.p_value, "cs_halfwidth": r.cs_halfwidth, "fixed_horizon_z": z, "fixed_horizon_p": Alternative::TwoSided.p_from_z(z)}),
            )
        }
        "growthbook_sequential_two_sided" => {
            let (est, se, n, alpha) =
                (i.num("point_estimate")?, i.num("standard_error")?, i.num("n_total")?, i.num("alpha")?);
            let planned = i.num("tuning_N_star")?;
            if !(planned > 0.0 && n > 0.0) {
                return invalid("n_total and tuning_N_star must be positive");
            }
            let d = sequential::Difference { estimate: est, variance: se * se };
            let tau2 = sequential::tau2_from_planned(alpha, planned, n, d.variance);
            let r = sequential::msprt(d, tau2, 0.0, alpha)?;
            let rho = (tau2 / (n * d.variance)).sqrt();
            Ok(
                json!({"rho": rho, "e_value": r.ln_lambda.exp(), "p_value": r.p_value, "cs_halfwidth": r.cs_halfwidth, "cs": [est - r.cs_halfwidth, est + r.cs_halfwidth]}),
            )
        }
        "multipletests" => {
            let (p, alpha) = (i.nums("p_values")?, i.num_or("alpha", 0.05)?);
            let (holm, bonf, bh) = (multiple::holm(&p)?, multiple::bonferroni(&p)?, multiple::benjamini_hochberg(&p)?);
            Ok(json!({
                "holm_adjusted": holm, "holm_reject": multiple::rejections(&holm, alpha),
                "bonferroni_adjusted": bonf, "bonferroni_reject": multiple::rejections(&bonf, alpha),
                "bh_adjusted": bh, "bh_reject": multiple::rejections(&bh, alpha),
            }))
        }
        "sample_size_two_proportions" => {
            let (p1, p2, alpha, pw) = (i.num("p1")?, i.num("p2")?, i.num_or("alpha", 0.05)?, i.num_or("power", 0.8)?);
            let alt = i.alternative()?;
            let n = power::sample_size_per_arm(p1, p2, alpha, pw, alt)?;
            Ok(json!({"n_per_arm": n, "power_at_n": power::power_per_arm(p1, p2, n, alpha, alt)?}))
        }
        "flagger_threshold_rule" => {
            let r = threshold_rule::threshold_rule(
                i.count("requests_per_check")?,
                i.num("true_error_rate")?,
                i.num("min_success_rate_pct")?,
                i.count("passes_needed_K")?,
                i.count("failed_checks_threshold_T")?,
            )?;
            Ok(
                json!({"per_check_fail_prob": r.per_check_fail_prob, "p_rollback": r.p_rollback, "p_promote": r.p_promote}),
            )
        }
        "decide" => {
            let parse_err = |e: serde_json::Error| StatsError::InvalidInput(e.to_string());
            let input: DecisionInput = serde_json::from_value(i.get("experiment")?.clone()).map_err(parse_err)?;
            let config: DecisionConfig = match inputs.get("config") {
                Some(c) => serde_json::from_value(c.clone()).map_err(parse_err)?,
                None => DecisionConfig::default(),
            };
            serde_json::to_value(decision::decide(&input, &config)?)
                .map_err(|e| StatsError::InvalidInput(e.to_string()))
        }
        other => Err(StatsError::UnknownTest(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_problem_and_do_not_stop_the_batch() {
        let entries = json!([
            {"test": "nope", "inputs": {}},
            {"test": "two_proportion_ztest_pooled", "inputs": {"x1": 5, "n1": 10, "x2": 3}},
            {"test": "two_proportion_ztest_pooled", "inputs": {"x1": -1, "n1": 10, "x2": 3, "n2": 10}},
            {"inputs": {}},
            {"test": "two_proportion_ztest_pooled", "inputs": {"x1": 5, "n1": 10.0, "x2": 3, "n2": 10}},
        ]);
        let (out, ok) = eval(&entries);
        assert!(!ok);
        let errs: Vec<&str> =
            out.as_array().unwrap().iter().map(|e| e.get("error").and_then(Value::as_str).unwrap_or("")).collect();
        assert!(errs[0].contains("unknown test `nope`"));
        assert!(errs[1].contains("`n2`"));
        assert!(errs[2].contains("`x1`"));
        assert!(errs[3].contains("test"));
        assert_eq!(errs[4], "");
        assert!(out[4]["outputs"]["z"].is_f64());
        let (not_array, ok) = eval(&json!({"test": "x"}));
        assert!(!ok && not_array[0]["error"].is_string());
    }

    #[test]
    fn decide_is_reachable_by_name() {
        let entries = json!([{"test": "decide", "inputs": {"experiment": {
            "control": "a",
            "goal": {"name": "conv", "arms": [
                {"arm": "a", "value": {"proportion": {"successes": 100, "trials": 1000}}},
                {"arm": "b", "value": {"proportion": {"successes": 100, "trials": 1000}}}]}}}}]);
        let (out, ok) = eval(&entries);
        assert!(ok, "{out}");
        assert_eq!(out[0]["outputs"]["outcome"]["action"], "continue");
    }
}
