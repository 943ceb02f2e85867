//! What the mesh reports of a routing object's distribution to its proxies. istiod, run with
//! `PILOT_ENABLE_STATUS`, writes into each VirtualService's and DestinationRule's status the
//! generation it reports on and a `Reconciled` condition, True once every proxy has applied that
//! generation ("4/5 proxies up to date." until then). Where the mesh reports, a write that relies
//! on an earlier one having reached every proxy waits for the report too, beyond the propagation
//! delay (which stays the floor: a report read from a cache may predate the last write).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::istio::{DestinationRule, VirtualService};

/// The condition istiod reports distribution with.
const RECONCILED: &str = "Reconciled";

/// One routing object's distribution, as the mesh reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Distribution {
    /// The mesh reports nothing: the propagation delay alone says when proxies have it.
    #[default]
    Unreported,
    /// Every proxy has applied the object's current generation.
    Reached,
    /// Not yet, and what the mesh says of it.
    Pending(String),
}

/// What istiod's status says, in the fields both kinds share.
struct Report<'a> {
    generation: Option<i64>,
    observed: Option<&'a IntOrString>,
    /// The `Reconciled` condition's status and message.
    reconciled: Option<(Option<&'a str>, Option<&'a str>)>,
}

/// A condition's type, status and message.
type Said<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

impl<'a> Report<'a> {
    fn new(
        generation: Option<i64>,
        observed: Option<&'a IntOrString>,
        conditions: impl Iterator<Item = Said<'a>>,
    ) -> Self {
        let mut reconciled = conditions.filter(|(type_, _, _)| *type_ == Some(RECONCILED));
        let reconciled = reconciled.next().map(|(_, status, message)| (status, message));
        Report { generation, observed, reconciled }
    }

    /// `mesh_reports`: other routing objects of the namespace carry reports, so one without a
    /// report has not been reported on yet (a new object, or a write istiod has not seen).
    fn distribution(&self, mesh_reports: bool) -> Distribution {
        let Some((status, message)) = self.reconciled else {
            return if mesh_reports {
                Distribution::Pending("not reported yet".into())
            } else {
                Distribution::Unreported
            };
        };
        let observed = self.observed.and_then(|g| match g {
            IntOrString::Int(n) => Some(i64::from(*n)),
            IntOrString::String(s) => s.parse().ok(),
        });
        let generation = self.generation.unwrap_or(1);
        if observed.is_some_and(|o| o < generation) {
            return Distribution::Pending(format!("generation {generation} not reported yet"));
        }
        match status {
            Some("True") => Distribution::Reached,
            _ => Distribution::Pending(message.unwrap_or("not reconciled").to_string()),
        }
    }
}

pub(crate) fn of_virtual_service(vs: &VirtualService, mesh_reports: bool) -> Distribution {
    let status = vs.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    let said = conditions.map(|c| (c.r#type.as_deref(), c.status.as_deref(), c.message.as_deref()));
    Report::new(vs.metadata.generation, status.and_then(|s| s.observed_generation.as_ref()), said)
        .distribution(mesh_reports)
}

pub(crate) fn of_destination_rule(dr: &DestinationRule, mesh_reports: bool) -> Distribution {
    let status = dr.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    let said = conditions.map(|c| (c.r#type.as_deref(), c.status.as_deref(), c.message.as_deref()));
    Report::new(dr.metadata.generation, status.and_then(|s| s.observed_generation.as_ref()), said)
        .distribution(mesh_reports)
}

/// Whether the mesh reports on `vs` (and so, istiod's flag being global, on every object).
pub(crate) fn reported(vs: &VirtualService) -> bool {
    let conditions = vs.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    conditions.into_iter().any(|c| c.r#type.as_deref() == Some(RECONCILED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(generation: i64, observed: &'a IntOrString, status: &'a str, message: &'a str) -> Report<'a> {
        Report {
            generation: Some(generation),
            observed: Some(observed),
            reconciled: Some((Some(status), Some(message))),
        }
    }

    #[test]
    fn reached_only_when_every_proxy_has_the_current_generation() {
        let four = IntOrString::String("4".into());
        assert_eq!(report(4, &four, "True", "5/5 proxies up to date.").distribution(true), Distribution::Reached);
        let pending = report(4, &four, "False", "4/5 proxies up to date.").distribution(true);
        assert_eq!(pending, Distribution::Pending("4/5 proxies up to date.".into()));
        let older = report(5, &four, "True", "5/5 proxies up to date.").distribution(true);
        assert_eq!(older, Distribution::Pending("generation 5 not reported yet".into()), "a report of the last write");
        let int = IntOrString::Int(5);
        assert_eq!(report(5, &int, "True", "").distribution(true), Distribution::Reached, "an integer generation");
    }

    #[test]
    fn without_a_report_it_waits_only_where_the_mesh_reports() {
        let none = Report { generation: Some(1), observed: None, reconciled: None };
        assert_eq!(none.distribution(false), Distribution::Unreported);
        assert_eq!(none.distribution(true), Distribution::Pending("not reported yet".into()));
    }
}
