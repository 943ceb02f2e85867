//! RolloutPolicies enforced by the API server: each policy compiled ([`crate::policy::admission`])
//! into a ValidatingAdmissionPolicy and its binding, owned by the policy (deleted with it) and
//! kept in sync with it; its `Admission` condition says whether they are in place. [`decide`] is
//! pure; [`reconcile`] applies what it returns. A policy that does not compile keeps its last
//! admission objects (a broken edit does not switch enforcement off) and says why.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{RolloutPolicy, RolloutPolicyStatus};
use crate::policy::admission;

use super::apply::FIELD_MANAGER;
use super::conditions::{self, reason};
use super::error::{Error, Result};
use super::shards::Shard;

/// While another replica holds the shard that writes policies, look again this often.
const NOT_HELD: Duration = Duration::from_secs(10);

/// What a policy needs: its admission objects, or why it has none.
#[derive(Debug)]
pub(crate) enum Decided {
    Admission(Box<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding)>),
    /// A rule does not compile: every problem, with its field.
    Invalid(String),
}

/// The admission objects `policy` compiles to, owned by it.
pub(crate) fn decide(policy: &RolloutPolicy) -> Decided {
    match admission::compile(policy) {
        Ok(compiled) => {
            let owner = owner(policy);
            let mut vap = compiled.admission_policy();
            vap.metadata.owner_references = owner.clone().map(|o| vec![o]);
            let mut binding = compiled.admission_binding(policy);
            binding.metadata.owner_references = owner.map(|o| vec![o]);
            Decided::Admission(Box::new((vap, binding)))
        }
        Err(problems) => Decided::Invalid(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
    }
}

fn owner(policy: &RolloutPolicy) -> Option<OwnerReference> {
    policy.controller_owner_ref(&())
}

/// The shard whose lease allows writing the policies' objects (shard 0's: policies are
/// cluster-wide, and one writer is enough).
pub(crate) struct Writer {
    pub shard: Shard,
}

async fn reconcile(policy: Arc<RolloutPolicy>, writer: Arc<Writer>) -> Result<Action> {
    if !writer.shard.held() {
        return Ok(Action::requeue(NOT_HELD));
    }
    let ctx = &writer.shard.ctx;
    let (ok, why, message) = match decide(&policy) {
        Decided::Admission(objects) => {
            let (vap, binding) = &*objects;
            match apply(&ctx.client, vap, binding).await {
                Ok(()) => (true, reason::COMPILED, format!("enforced at admission by ValidatingAdmissionPolicy {}", vap.name_any())),
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => (
                    false,
                    reason::ADMISSION_UNAVAILABLE,
                    "the cluster serves no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (Kubernetes 1.30 or later): only the controller checks this policy".to_string(),
                ),
                Err(e) => return Err(e),
            }
        }
        Decided::Invalid(problems) => (false, reason::INVALID_RULE, problems),
    };
    write_status(&ctx.client, &policy, ok, why, message, ctx.clock.now()).await?;
    Ok(Action::await_change())
}

async fn apply(
    client: &kube::Client,
    vap: &ValidatingAdmissionPolicy,
    binding: &ValidatingAdmissionPolicyBinding,
) -> Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // The policy before its binding: a binding to a missing policy would refuse every match.
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    policies.patch(&vap.name_any(), &params, &Patch::Apply(vap)).await?;
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    bindings.patch(&binding.name_any(), &params, &Patch::Apply(binding)).await?;
    Ok(())
}

/// Writes the `Admission` condition when it changed.
async fn write_status(
    client: &kube::Client,
    policy: &RolloutPolicy,
    ok: bool,
    why: &str,
    message: String,
    now: jiff::Timestamp,
) -> Result<()> {
    let before = policy.status.clone().unwrap_or_default();
    let mut status = RolloutPolicyStatus { observed_generation: policy.metadata.generation, ..before.clone() };
    conditions::set(&mut status.conditions, conditions::ADMISSION, ok, why, message, policy.metadata.generation, now);
    // `set` keeps the transition time of an unchanged condition: equal means nothing to write.
    if status == before {
        return Ok(());
    }
    let api: Api<RolloutPolicy> = Api::all(client.clone());
    let patch = json!({"status": status});
    api.patch_status(&policy.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

fn error_policy(_: Arc<RolloutPolicy>, error: &Error, _: Arc<Writer>) -> Action {
    tracing::warn!(%error, "RolloutPolicy admission objects");
    Action::requeue(Duration::from_secs(5))
}

/// Keeps every policy's admission objects in sync until `shutdown` resolves.
pub(crate) async fn run(writer: Writer, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = writer.shard.ctx.client.clone();
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=forklane");
    Controller::new(Api::<RolloutPolicy>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ValidatingAdmissionPolicy>::all(client.clone()), config.clone())
        .owns(Api::<ValidatingAdmissionPolicyBinding>::all(client), config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(writer))
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PolicyRule, RolloutPolicySpec};

    fn policy(rules: Vec<PolicyRule>) -> RolloutPolicy {
        let mut p = RolloutPolicy::new("teams", RolloutPolicySpec { rules, ..Default::default() });
        p.metadata.uid = Some("uid-1".into());
        p
    }

    #[test]
    fn a_compiled_policy_owns_both_objects_and_a_broken_one_says_why() {
        let rule =
            |expression: &str| PolicyRule { name: "team".into(), expression: expression.into(), ..Default::default() };
        let Decided::Admission(objects) = decide(&policy(vec![rule("has(object.metadata.labels)")])) else {
            panic!("a policy that compiles has admission objects")
        };
        let (vap, binding) = *objects;
        for owners in [&vap.metadata.owner_references, &binding.metadata.owner_references] {
            let owner = &owners.as_ref().expect("owned")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
                ("RolloutPolicy", "teams", "uid-1")
            );
            assert_eq!(owner.controller, Some(true));
        }
        let Decided::Invalid(said) = decide(&policy(vec![rule("has(object.metadata.labels")])) else {
            panic!("a rule that does not compile")
        };
        assert!(said.starts_with("spec.rules[0].expression: ERROR: <input>:1:"), "{said}");
    }
}
