//! Golden outputs: every example, every state, all three routing modes. Every Istio object
//! rendered here is also checked against the real CRD schema and against istiod's validation
//! rules; every HTTPRoute against the Gateway API's real CRDs (schema, defaults and CEL rules, by
//! the embedded API server's own validation).

use crate::support;

use std::path::Path;

use forklane::cli::render::{RenderArgs, render};
use forklane_core::api::Routing;
use forklane_core::api::load::{Document, load_documents};
use forklane_core::plan::{Action, Observed, Target, plan};

fn experiments(path: &Path) -> Vec<forklane_core::api::Experiment> {
    let docs = load_documents(&std::fs::read_to_string(path).unwrap()).unwrap();
    docs.into_iter().filter_map(|d| if let Document::Experiment(e) = d { Some(*e) } else { None }).collect()
}

/// Every state of the file rendered through the CLI code, errors included, as one text.
fn render_all(path: &Path, mode: Routing) -> String {
    let exp = &experiments(path)[0];
    let states = plan(exp, &Target::Step(0), mode, &Observed::default()).map(|p| p.states).unwrap_or(1);
    let mut out = String::new();
    let targets =
        (0..states).map(|n| (Some(n), None)).chain(std::iter::once((None, Some(exp.spec.arms[1].name.clone()))));
    for (step, final_arm) in targets {
        let args = RenderArgs { file: path.to_path_buf(), step, final_arm, mesh: None, provider: Some(mode) };
        match render(&args) {
            Ok(yaml) => out.push_str(&yaml),
            Err(errors) => out.push_str(&format!("# error\n{}\n", errors.join("\n"))),
        }
        out.push_str("# ====\n");
    }
    out
}

#[test]
fn golden_renders_of_every_example() {
    for path in support::examples() {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        for mode in [Routing::Istio, Routing::GatewayApi, Routing::Native] {
            insta::assert_snapshot!(format!("{stem}-{}", mode.as_str()), render_all(&path, mode));
        }
    }
}

#[test]
fn every_rendered_istio_object_is_valid() {
    let mut checked = 0;
    for path in support::examples() {
        for exp in experiments(&path) {
            let states = plan(&exp, &Target::Step(0), Routing::Istio, &Observed::default()).unwrap().states;
            let targets =
                (0..states).map(Target::Step).chain(exp.spec.arms.iter().map(|a| Target::Final(a.name.clone())));
            for target in targets {
                let p = plan(&exp, &target, Routing::Istio, &Observed::default()).unwrap();
                let drs: Vec<_> = p
                    .actions
                    .iter()
                    .filter_map(|a| if let Action::DestinationRule(d) = a { Some((**d).clone()) } else { None })
                    .collect();
                for action in &p.actions {
                    match action {
                        Action::VirtualService(vs) => {
                            support::istio_schema::assert_valid_istio(&action.object());
                            let problems = forklane_core::istio::validate_routing(vs, &drs);
                            assert!(problems.is_empty(), "{}: {target:?}: {problems:?}", path.display());
                            checked += 1;
                        }
                        Action::DestinationRule(_) | Action::Telemetry(_) => {
                            support::istio_schema::assert_valid_istio(&action.object())
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} VirtualServices checked");
}

/// Every state (and every final arm) of every example the Gateway API can route: its HTTPRoute is
/// admitted by the real v1.6.1 CRD, standard and experimental channel alike, unchanged by the
/// server's defaulting (what Forklane writes is what it reads back), and names only arm Services
/// the same plan writes.
#[test]
fn every_rendered_http_route_is_valid_against_the_real_crds() {
    use forklane_core::gateway::{EXPERIMENTAL_HTTPROUTE_CRD, HTTPROUTE_CRD};
    let mut checked = 0;
    let mut refused = Vec::new();
    for path in support::examples() {
        for exp in experiments(&path) {
            let states = match plan(&exp, &Target::Step(0), Routing::GatewayApi, &Observed::default()) {
                Ok(p) => p.states,
                Err(e) => {
                    refused.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let targets =
                (0..states).map(Target::Step).chain(exp.spec.arms.iter().map(|a| Target::Final(a.name.clone())));
            for target in targets {
                let p = plan(&exp, &target, Routing::GatewayApi, &Observed::default()).unwrap();
                let services: Vec<String> = p
                    .actions
                    .iter()
                    .filter_map(|a| if let Action::ArmService(s) = a { s.metadata.name.clone() } else { None })
                    .collect();
                for action in &p.actions {
                    let Action::HttpRoute(route) = action else { continue };
                    let object = action.object();
                    for crd in [HTTPROUTE_CRD, EXPERIMENTAL_HTTPROUTE_CRD] {
                        let defaulted = forklane_sim::cluster::validate_custom_object(crd, &object)
                            .unwrap_or_else(|e| panic!("{}: {target:?}: {e:#?}\n{object:#}", path.display()));
                        assert_eq!(
                            defaulted["spec"],
                            object["spec"],
                            "{}: {target:?}: defaulting changed it",
                            path.display()
                        );
                    }
                    let named = route.spec.rules.iter().flatten().flat_map(|r| {
                        let backends = r.backend_refs.iter().flatten().map(|b| b.name.clone());
                        let mirrors = r
                            .filters
                            .iter()
                            .flatten()
                            .filter_map(|f| f.request_mirror.as_ref().map(|m| m.backend_ref.name.clone()));
                        backends.chain(mirrors).collect::<Vec<_>>()
                    });
                    for name in named {
                        assert!(services.contains(&name), "{}: {target:?}: {name} is not written", path.display());
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 30, "only {checked} HTTPRoutes checked");
    assert_eq!(refused, Vec::<String>::new(), "every example routes through HTTPRoutes");
}
