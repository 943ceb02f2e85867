//! Every integration test of the `forklane` package, in one test binary: linking 57 binaries, each
//! with kube, hyper and both libraries, took most of the suite's build time. Each file of `tests/`
//! is a module named after it, so nextest names a test `controller_e2e::<test>` and filters
//! such as `test(/^controller_e2e::/)` select a file's tests. Every test still runs in its own
//! process under nextest (`scripts/test`).

mod support;

mod analysis_prometheus;
mod analysis_template;
mod browser;
mod cli_render_validate;
mod cli_stats_plan;
mod cli_traffic;
mod cluster_admission_policy;
mod cluster_api;
mod cluster_audit;
mod cluster_bad_input;
mod cluster_connections;
mod cluster_deploy;
mod cluster_events;
mod cluster_gateway_api;
mod cluster_graceful;
mod cluster_hostile_memory;
mod cluster_kubectl;
mod cluster_watch;
mod controller_cohort_e2e;
mod controller_crowd;
mod controller_e2e;
mod controller_experiment_metrics;
mod controller_faults;
mod controller_fencing;
mod controller_health_e2e;
mod controller_lag_e2e;
mod controller_leader;
mod controller_lifecycle_e2e;
mod controller_prometheus;
mod controller_scale_readme;
mod controller_shards;
mod controller_steady_state;
mod controller_telemetry;
mod crds_up_to_date;
mod demo;
mod dependency_graph;
mod deploy_dashboard;
mod deploy_image;
mod deploy_krew;
mod deploy_rbac;
mod docs_layout;
mod experiment_identity_kubectl;
mod gateway_api_e2e;
mod get_view;
mod istio_schema_selfcheck;
mod kubectl_create;
mod plan_properties;
mod policy_admission;
mod policy_eval;
mod render_golden;
mod render_kubectl;
mod render_yaml11;
mod report_render;
mod stats_simulation;
mod stats_study;
mod stats_vectors;
mod traffic_cohort;
mod traffic_examples;
mod traffic_lag;
mod traffic_mesh;
mod traffic_nodeport;
mod traffic_prometheus;
mod validate_errors;
mod view_tree;
mod walkthrough_article;
mod workloads_kubectl;
mod workloads_rollout;
