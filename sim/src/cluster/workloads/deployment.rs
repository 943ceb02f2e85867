//! The deployment controller (`pkg/controller/deployment`): one sync of one Deployment, as a
//! pure function of the Deployment, the ReplicaSets and Pods of its namespace, and the time.
//! It follows `syncDeployment`: paused and scaling syncs, `Recreate` and `RollingUpdate`
//! rollouts, revision bookkeeping, history cleanup and the status/conditions update. Where
//! Kubernetes sends several requests in one sync, later steps here see the earlier ones'
//! effect on working copies, and each object gets one write at the end.

use super::deployment_status::{
    self as status, PAUSED, PROGRESSING, RESUMED, TIMED_OUT, deployment_complete, get_condition, has_progress_deadline,
    new_condition, set_condition,
};
use super::hash::pod_template_hash;
use super::objects::{
    by_creation, controlled_by, controller_ref, is_deleting, name, namespace, phase, set_annotation, spec_replicas,
    status_int, uid,
};
use super::rollout::{
    self, HASH_LABEL, REVISION, equal_ignore_hash, is_rolling_update, max_surge, max_unavailable, revision,
};
use super::{CONTROLLER_MANAGER, Kind, Reconciled, Write};
use forklane_core::clock::Time;
use serde_json::{Value, json};
use std::borrow::Borrow;

/// One sync of `deployment`; `replica_sets` and `pods` are those of its namespace, `own` any
/// replica sets that include those it controls (e.g. `replica_sets`, or the driver's replica
/// sets grouped by controller).
pub(crate) fn reconcile_deployment<'o>(
    deployment: &Value,
    replica_sets: &[impl Borrow<Value>],
    own: impl IntoIterator<Item = &'o Value>,
    pods: &[impl Borrow<Value>],
    now: Time,
) -> Reconciled {
    if is_deleting(deployment) {
        return Reconciled::default();
    }
    let all_rss = replica_sets.iter().map(Borrow::borrow).collect();
    let pods = pods.iter().map(Borrow::borrow).collect();
    let mut s = Sync::new(deployment, all_rss, own, pods, now);
    s.check_paused_conditions();
    if deployment["spec"]["paused"] == true || s.is_scaling_event() {
        s.sync();
    } else if is_rolling_update(deployment) {
        s.rollout_rolling();
    } else {
        s.rollout_recreate();
    }
    s.finish()
}

struct Sync<'a> {
    now: Time,
    orig: &'a Value,
    /// Working copy: annotations and status change during the sync.
    d: Value,
    /// Every ReplicaSet in the namespace (a new name must not collide).
    all_rss: Vec<&'a Value>,
    /// The Deployment's ReplicaSets, oldest first; a new one is appended.
    rss: Vec<Value>,
    dirty: Vec<bool>,
    created: Option<usize>,
    pods: Vec<&'a Value>,
    deletes: Vec<Write>,
}

impl<'a> Sync<'a> {
    fn new<'o>(
        d: &'a Value,
        all_rss: Vec<&'a Value>,
        own: impl IntoIterator<Item = &'o Value>,
        pods: Vec<&'a Value>,
        now: Time,
    ) -> Self {
        let mut rss: Vec<Value> = own.into_iter().filter(|rs| controlled_by(rs, uid(d))).cloned().collect();
        rss.sort_by(by_creation);
        let dirty = vec![false; rss.len()];
        Sync { now, orig: d, d: d.clone(), all_rss, rss, dirty, created: None, pods, deletes: vec![] }
    }

    fn replicas(&self) -> i64 {
        spec_replicas(&self.d)
    }

    /// `checkPausedConditions`: a Progressing condition with reason DeploymentPaused or
    /// DeploymentResumed, unless the rollout has already timed out.
    fn check_paused_conditions(&mut self) {
        if !has_progress_deadline(&self.d) {
            return;
        }
        let cond = get_condition(&self.d["status"], PROGRESSING);
        if cond.is_some_and(|c| c["reason"] == TIMED_OUT) {
            return;
        }
        let paused_cond = cond.is_some_and(|c| c["reason"] == PAUSED);
        let paused = self.d["spec"]["paused"] == true;
        let cond = if paused && !paused_cond {
            new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", self.now)
        } else if !paused && paused_cond {
            new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", self.now)
        } else {
            return;
        };
        set_condition(&mut self.d["status"], cond);
    }

    /// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created if asked and absent)
    /// and the old ones, with revisions and the new one's annotations brought up to date.
    fn all_replica_sets(&mut self, create: bool) -> (Option<usize>, Vec<usize>) {
        let template = self.d["spec"]["template"].clone();
        let found = (0..self.rss.len()).find(|&i| equal_ignore_hash(&self.rss[i]["spec"]["template"], &template));
        let old: Vec<usize> = (0..self.rss.len()).filter(|&i| Some(i) != found).collect();
        let new_revision = old.iter().map(|&i| revision(&self.rss[i])).max().unwrap_or(0) + 1;
        if let Some(n) = found {
            let mut changed = rollout::set_new_rs_annotations(&self.d, &mut self.rss[n], new_revision, true);
            let min_ready = self.d["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
            if self.rss[n]["spec"]["minReadySeconds"].as_i64().unwrap_or(0) != min_ready {
                self.rss[n]["spec"]["minReadySeconds"] = json!(min_ready);
                changed = true;
            }
            self.dirty[n] |= changed;
            let rev = revision(&self.rss[n]).to_string();
            set_annotation(&mut self.d, REVISION, &rev);
            if has_progress_deadline(&self.d) && get_condition(&self.d["status"], PROGRESSING).is_none() {
                let msg = format!("Found new replica set \"{}\"", name(&self.rss[n]));
                set_condition(
                    &mut self.d["status"],
                    new_condition(PROGRESSING, "True", "FoundNewReplicaSet", &msg, self.now),
                );
            }
            return (Some(n), old);
        }
        if !create {
            return (None, old);
        }
        let hash = pod_template_hash(&template, self.d["status"]["collisionCount"].as_i64());
        let rs_name = format!("{}-{hash}", name(&self.d));
        if self.all_rss.iter().any(|rs| name(rs) == rs_name) {
            // Another template already has this name: perturb the hash and retry next sync.
            let count = self.d["status"]["collisionCount"].as_i64().unwrap_or(0);
            self.d["status"]["collisionCount"] = json!(count + 1);
            return (None, old);
        }
        let mut rs_template = template;
        rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = self.d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let mut rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": namespace(&self.d),
                "labels": rs_template["metadata"]["labels"],
                "ownerReferences": [controller_ref(&self.d, "apps/v1", "Deployment")],
            },
            "spec": {"replicas": 0, "selector": selector, "template": rs_template},
        });
        if let Some(m) = self.d["spec"]["minReadySeconds"].as_i64().filter(|m| *m != 0) {
            rs["spec"]["minReadySeconds"] = json!(m);
        }
        self.rss.push(rs);
        self.dirty.push(false);
        let n = self.rss.len() - 1;
        self.created = Some(n);
        let mut all = old.clone();
        all.push(n);
        let replicas = self.new_rs_new_replicas(&all, n);
        self.rss[n]["spec"]["replicas"] = json!(replicas);
        rollout::set_new_rs_annotations(&self.d, &mut self.rss[n], new_revision, false);
        if has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set \"{}\"", name(&self.rss[n]));
            set_condition(
                &mut self.d["status"],
                new_condition(PROGRESSING, "True", "NewReplicaSetCreated", &msg, self.now),
            );
        }
        set_annotation(&mut self.d, REVISION, &new_revision.to_string());
        (Some(n), old)
    }

    /// `NewRSNewReplicas`: as many as the surge allows (rolling), or all at once (recreate).
    fn new_rs_new_replicas(&self, all: &[usize], n: usize) -> i64 {
        let current_new = spec_replicas(&self.rss[n]);
        if !is_rolling_update(&self.d) {
            return self.replicas();
        }
        let current: i64 = all.iter().map(|&i| spec_replicas(&self.rss[i])).sum();
        let max_total = self.replicas() + max_surge(&self.d);
        if current >= max_total {
            return current_new;
        }
        current_new + (max_total - current).min(self.replicas() - current_new)
    }

    /// `scaleReplicaSet`: sets replicas and the desired/max annotations; returns whether the
    /// size changed.
    fn scale(&mut self, i: usize, to: i64) -> bool {
        let (replicas, surge) = (self.replicas(), max_surge(&self.d));
        let size_changed = spec_replicas(&self.rss[i]) != to;
        let annotations_changed = rollout::set_replicas_annotations(&mut self.rss[i], replicas, replicas + surge);
        if size_changed {
            self.rss[i]["spec"]["replicas"] = json!(to);
        }
        self.dirty[i] |= size_changed || annotations_changed;
        size_changed
    }

    fn active(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter().copied().filter(|&i| spec_replicas(&self.rss[i]) > 0).collect()
    }

    fn with_new(old: &[usize], new: Option<usize>) -> Vec<usize> {
        old.iter().copied().chain(new).collect()
    }

    fn sum(&self, idx: &[usize], f: impl Fn(&Value) -> i64) -> i64 {
        idx.iter().map(|&i| f(&self.rss[i])).sum()
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for a different replica count.
    fn is_scaling_event(&mut self) -> bool {
        let (new, old) = self.all_replica_sets(false);
        let replicas = self.replicas();
        self.active(&Self::with_new(&old, new))
            .into_iter()
            .any(|i| rollout::desired_replicas_annotation(&self.rss[i]).is_some_and(|d| d != replicas))
    }

    /// `sync`: scaling and paused Deployments — resize without rolling out.
    fn sync(&mut self) {
        let (new, old) = self.all_replica_sets(false);
        self.proportional_scale(new, &old);
        if self.d["spec"]["paused"] == true {
            self.cleanup(&old);
        }
        let all = Self::with_new(&old, new);
        let st = status::calculate_status(&self.d, &self.refs(&all), new.map(|n| &self.rss[n]), self.now);
        self.set_status(st);
    }

    /// `scale` in sync.go: resize the only active ReplicaSet, or spread the change across
    /// active ones in proportion to their size (`GetProportion`), leftovers to the largest.
    fn proportional_scale(&mut self, new: Option<usize>, old: &[usize]) {
        let replicas = self.replicas();
        let mut newest_first = old.to_vec();
        newest_first.sort_by(|&a, &b| by_creation(&self.rss[b], &self.rss[a]));
        let active = self.active(&Self::with_new(&newest_first, new));
        let only = match active.len() {
            0 => new.or(newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            if spec_replicas(&self.rss[i]) != replicas {
                self.scale(i, replicas);
            }
            return;
        }
        if let Some(n) = new
            && rollout::desired_replicas_annotation(&self.rss[n]) == Some(replicas)
            && spec_replicas(&self.rss[n]) == replicas
            && status_int(&self.rss[n], "availableReplicas") == replicas
        {
            // Saturated: the new ReplicaSet is complete, old ones go to zero.
            for i in self.active(old) {
                self.scale(i, 0);
            }
            return;
        }
        if !is_rolling_update(&self.d) {
            return;
        }
        let allowed = if replicas > 0 { replicas + max_surge(&self.d) } else { 0 };
        let to_add = allowed - self.sum(&active, spec_replicas);
        let mut order = active;
        // Larger first; ties: newer first when growing, older first when shrinking.
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rss[a], &self.rss[b]);
            spec_replicas(rb)
                .cmp(&spec_replicas(ra))
                .then_with(|| if to_add > 0 { by_creation(rb, ra) } else { by_creation(ra, rb) })
        });
        let mut added = 0;
        let mut sizes = Vec::new();
        for &i in &order {
            let size = spec_replicas(&self.rss[i]);
            let proportion = if to_add == 0 { 0 } else { self.proportion(i, to_add, added, allowed) };
            added += proportion;
            sizes.push(size + proportion);
        }
        if let Some(first) = sizes.first_mut()
            && added != to_add
        {
            *first = (*first + to_add - added).max(0);
        }
        for (&i, size) in order.iter().zip(sizes) {
            self.scale(i, size);
        }
    }

    /// `GetProportion` with `getReplicaSetFraction`.
    fn proportion(&self, i: usize, to_add: i64, added: i64, allowed: i64) -> i64 {
        let rs = &self.rss[i];
        let size = spec_replicas(rs);
        if size == 0 || to_add == added {
            return 0;
        }
        let fraction = if self.replicas() == 0 {
            -size
        } else {
            let annotated = rollout::max_replicas_annotation(rs).unwrap_or_else(|| status_int(&self.d, "replicas"));
            ((size * allowed) as f64 / annotated.max(1) as f64).round() as i64 - size
        };
        let room = to_add - added;
        if to_add > 0 { fraction.min(room) } else { fraction.max(room) }
    }

    fn rollout_rolling(&mut self) {
        let (new, old) = self.all_replica_sets(true);
        let all = Self::with_new(&old, new);
        let Some(n) = new else {
            // Name collision: only the collision count is written this time.
            return self.sync_rollout_status(&all, None);
        };
        if self.reconcile_new_rs(&all, n) {
            return self.sync_rollout_status(&all, new);
        }
        let active_old = self.active(&old);
        if self.reconcile_old_rss(&all, &active_old, n) {
            return self.sync_rollout_status(&all, new);
        }
        if deployment_complete(&self.d, &self.d["status"]) {
            self.cleanup(&old);
        }
        self.sync_rollout_status(&all, new);
    }

    fn reconcile_new_rs(&mut self, all: &[usize], n: usize) -> bool {
        let (current, want) = (spec_replicas(&self.rss[n]), self.replicas());
        if current == want {
            return false;
        }
        if current > want {
            return self.scale(n, want);
        }
        let to = self.new_rs_new_replicas(all, n);
        self.scale(n, to)
    }

    /// `reconcileOldReplicaSets`: scale down as far as maxUnavailable allows, counting the
    /// new ReplicaSet's unavailable pods, unhealthy old replicas first.
    fn reconcile_old_rss(&mut self, all: &[usize], old: &[usize], n: usize) -> bool {
        if self.sum(old, spec_replicas) == 0 {
            return false;
        }
        let min_available = self.replicas() - max_unavailable(&self.d);
        let new_unavailable = spec_replicas(&self.rss[n]) - status_int(&self.rss[n], "availableReplicas");
        let max_scaled_down = self.sum(all, spec_replicas) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let mut old = old.to_vec();
        old.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let (size, available) = (spec_replicas(&self.rss[i]), status_int(&self.rss[i], "availableReplicas"));
            if size == 0 || size == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            self.scale(i, size - down);
            cleaned += down;
        }
        // scaleDownOldReplicaSetsForRollingUpdate
        let available = self.sum(all, |rs| status_int(rs, "availableReplicas"));
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for &i in &old {
                if scaled >= budget {
                    break;
                }
                let size = spec_replicas(&self.rss[i]);
                if size == 0 {
                    continue;
                }
                let down = size.min(budget - scaled);
                self.scale(i, size - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// `rolloutRecreate`: old ReplicaSets to zero, wait until no old pod exists (terminating
    /// ones included), then the new ReplicaSet at full size.
    fn rollout_recreate(&mut self) {
        let (new, old) = self.all_replica_sets(false);
        let all = Self::with_new(&old, new);
        let mut scaled_down = false;
        for i in self.active(&old) {
            scaled_down |= self.scale(i, 0);
        }
        if scaled_down || self.old_pods_running(new, &old) {
            return self.sync_rollout_status(&all, new);
        }
        let (new, old) = if new.is_none() { self.all_replica_sets(true) } else { (new, old) };
        let all = Self::with_new(&old, new);
        if let Some(n) = new {
            let want = self.replicas();
            self.scale(n, want);
        }
        if deployment_complete(&self.d, &self.d["status"]) {
            self.cleanup(&old);
        }
        self.sync_rollout_status(&all, new);
    }

    /// `oldPodsRunning`: any old replica counted, or any pod of an old ReplicaSet that has not
    /// finished (pods being deleted still run until their grace period ends).
    fn old_pods_running(&self, new: Option<usize>, old: &[usize]) -> bool {
        if self.sum(old, |rs| status_int(rs, "replicas")) > 0 {
            return true;
        }
        let new_uid = new.map(|n| uid(&self.rss[n]).to_string());
        self.pods.iter().any(|p| {
            old.iter().any(|&i| controlled_by(p, uid(&self.rss[i])))
                && new_uid.as_deref().is_none_or(|u| !controlled_by(p, u))
                && !matches!(phase(p), "Succeeded" | "Failed")
        })
    }

    /// `cleanupDeployment`: delete the oldest empty ReplicaSets beyond revisionHistoryLimit.
    fn cleanup(&mut self, old: &[usize]) {
        let Some(limit) = self.d["spec"]["revisionHistoryLimit"].as_i64() else { return };
        let mut cleanable: Vec<usize> = old.iter().copied().filter(|&i| !is_deleting(&self.rss[i])).collect();
        let excess = cleanable.len() as i64 - limit;
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|&a, &b| {
            revision(&self.rss[a]).cmp(&revision(&self.rss[b])).then_with(|| by_creation(&self.rss[a], &self.rss[b]))
        });
        for &i in cleanable.iter().take(excess as usize) {
            let rs = &self.rss[i];
            let observed = rs["status"]["observedGeneration"].as_i64().unwrap_or(0);
            if status_int(rs, "replicas") != 0 || spec_replicas(rs) != 0 || super::objects::generation(rs) > observed {
                continue;
            }
            self.deletes.push(Write::Delete {
                kind: Kind::ReplicaSet,
                namespace: namespace(rs).into(),
                name: name(rs).into(),
                uid: uid(rs).into(),
                grace_period_seconds: None,
                manager: CONTROLLER_MANAGER,
            });
        }
    }

    fn refs(&self, idx: &[usize]) -> Vec<&Value> {
        idx.iter().map(|&i| &self.rss[i]).collect()
    }

    fn sync_rollout_status(&mut self, all: &[usize], new: Option<usize>) {
        let st = status::rollout_status(&self.d, &self.refs(all), new.map(|n| &self.rss[n]), self.now);
        self.set_status(st);
    }

    fn set_status(&mut self, st: Value) {
        self.d["status"] = st;
    }

    /// The requests of this sync: ReplicaSet creates and updates, then the Deployment's
    /// annotations and status, then history deletions.
    fn finish(self) -> Reconciled {
        let mut out = Reconciled::default();
        for (i, rs) in self.rss.iter().enumerate() {
            if Some(i) == self.created {
                out.writes.push(Write::Create {
                    kind: Kind::ReplicaSet,
                    object: rs.clone(),
                    manager: CONTROLLER_MANAGER,
                });
            } else if self.dirty[i] {
                out.writes.push(Write::Update {
                    kind: Kind::ReplicaSet,
                    object: rs.clone(),
                    manager: CONTROLLER_MANAGER,
                });
            }
        }
        if self.d["metadata"] != self.orig["metadata"] {
            let mut d = self.orig.clone();
            d["metadata"] = self.d["metadata"].clone();
            out.writes.push(Write::Update { kind: Kind::Deployment, object: d, manager: CONTROLLER_MANAGER });
        }
        if self.d["status"] != self.orig["status"] {
            let mut d = self.orig.clone();
            d["status"] = self.d["status"].clone();
            out.writes.push(Write::UpdateStatus { kind: Kind::Deployment, object: d, manager: CONTROLLER_MANAGER });
        }
        out.writes.extend(self.deletes);
        if let Some(deadline) = status::progress_deadline(&self.d, &self.d["status"]) {
            // `requeueStuckDeployment`: look again just after the deadline.
            out.requeue(forklane_core::clock::add_secs(deadline, 1));
        }
        out
    }
}
