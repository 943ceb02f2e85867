//! Sharding across replicas with real processes: three `forklane run --shards 3` processes share
//! 1,000 canary experiments on the embedded cluster, each leading one shard through its own
//! Lease. Every write for an experiment comes from the replica that holds its shard's Lease at
//! that moment, by the request audit (leases may move while the replicas starve). One replica
//! is killed (SIGKILL: no release, no goodbye); a survivor takes its shard within the lease
//! duration and one look, and then carries an edit of every experiment of that shard, which after
//! the kill no other replica writes.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use forklane_core::api::Experiment;
use forklane_core::controller::shards::{lease_name, shard_of};
use forklane_core::istio::VirtualService;
use forklane_sim::cluster::AuditRecord;
use forklane_sim::sandbox::Sandbox;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use support::forklane_run::ForklaneRun;
use support::scale::{self, Config, each, experiment, namespace_of, until, workloads};

const N: usize = 1_000;
const SHARDS: usize = 3;
const LEASE: &str = "forklane-controller";
const LEASE_NS: &str = "default";
/// Seconds; a replica renews and looks every third of it (`forklane run` derives the grace).
const LEASE_DURATION: u64 = 6;
const LOOK: u64 = LEASE_DURATION / 3;

/// A `forklane run --shards 3` process, named `identity`.
fn replica(kubeconfig: &std::path::Path, identity: &str) -> ForklaneRun {
    let args = ["--lease-namespace", LEASE_NS, "--lease-duration", &LEASE_DURATION.to_string()];
    let args: Vec<String> = args.iter().map(|a| a.to_string()).chain(["--shards".into(), SHARDS.to_string()]).collect();
    ForklaneRun::start(kubeconfig, identity, "127.0.0.1:0", &args)
}

/// The holder of each shard's Lease ("" when none).
async fn holders(leases: &Api<Lease>) -> Vec<String> {
    let mut out = Vec::new();
    for shard in 0..SHARDS {
        let lease = leases.get_opt(&lease_name(LEASE, shard, SHARDS)).await.expect("read the lease");
        out.push(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity).unwrap_or_default());
    }
    out
}

/// The experiment (namespace, name) a controller's write is for: its status, its
/// VirtualService or its DestinationRule (`{experiment}-forklane`). Events are left out.
fn written_experiment(r: &AuditRecord) -> Option<(String, String)> {
    if !matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete") {
        return None;
    }
    let name = r.name.clone()?;
    let experiment = match r.resource.as_str() {
        "experiments" => name,
        "virtualservices" | "destinationrules" => name.strip_suffix("-forklane")?.to_string(),
        _ => return None,
    };
    Some((r.namespace.clone()?, experiment))
}

/// Which replicas wrote for each experiment among `records`, by identity.
fn writers(records: &[AuditRecord], replicas: &[ForklaneRun]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in records {
        let Some(replica) = replicas.iter().find(|p| p.agent == r.user_agent) else { continue };
        if let Some(key) = written_experiment(r) {
            out.entry(key).or_default().insert(replica.identity.clone());
        }
    }
    out
}

/// Writes for an experiment sent by a replica that did not hold its shard's Lease at that moment,
/// by the audit: a replica holds a shard from its successful write of the shard's Lease (a take or
/// a renewal) until another replica's; `start` holds when the records begin. Leases may move
/// while the replicas starve for CPU, and a shard may come back; one writer at a time is what
/// must hold.
fn foreign_writes(records: &[AuditRecord], replicas: &[ForklaneRun], start: &[String]) -> Vec<String> {
    let leases: Vec<String> = (0..SHARDS).map(|k| lease_name(LEASE, k, SHARDS)).collect();
    let mut holder: Vec<String> = start.to_vec();
    let mut out = Vec::new();
    for r in records {
        let Some(replica) = replicas.iter().find(|p| p.agent == r.user_agent) else { continue };
        if r.resource == "leases" {
            let k = leases.iter().position(|l| r.name.as_ref() == Some(l));
            if let Some(k) = k.filter(|_| r.code < 300 && matches!(r.verb.as_str(), "create" | "update" | "patch")) {
                holder[k] = replica.identity.clone();
            }
            continue;
        }
        if let Some(key) = written_experiment(r)
            && holder[shard(&key)] != replica.identity
        {
            out.push(format!(
                "{} {} {key:?} by {} while {} held shard {}",
                r.verb,
                r.resource,
                replica.identity,
                holder[shard(&key)],
                shard(&key)
            ));
        }
    }
    out
}

fn shard(key: &(String, String)) -> usize {
    shard_of(&key.0, &key.1, SHARDS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_split_the_experiments_and_a_killed_ones_shard_moves_to_one_survivor() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let n: usize = std::env::var("SHARDS_N").map_or(N, |v| v.parse().unwrap());
        let config = Config { namespaces: 10, timeout: Duration::from_secs(240), ..Config::new(n) };
        // The cluster on the real clock, as the replicas are (and its kubelets cost no more).
        let env = Sandbox::start(true, 1.0, true).await.expect("sandbox starts");
        let started = Instant::now();
        let stage = |what: &str| eprintln!("shards: {what} after {:.1?}", started.elapsed());
        workloads(&env, &config).await;
        stage("every pod ready");
        let kubeconfig = std::env::temp_dir().join(format!("forklane-shards-{}.kubeconfig", rand::random::<u64>()));
        std::fs::write(&kubeconfig, env.cluster.kubeconfig_yaml()).unwrap();
        let mut replicas: Vec<ForklaneRun> =
            ["replica-0", "replica-1", "replica-2"].iter().map(|id| replica(&kubeconfig, id)).collect();

        // Each replica takes one shard: an even split once they count each other.
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), LEASE_NS);
        until("each replica leads one shard", Duration::from_secs(60), Duration::from_millis(200), || async {
            let held = holders(&leases).await;
            let distinct: BTreeSet<&String> = held.iter().filter(|h| !h.is_empty()).collect();
            if distinct.len() == SHARDS { Ok(()) } else { Err(format!("holders {held:?}")) }
        })
        .await;
        let before = holders(&leases).await;
        stage("each replica leads a shard");

        env.cluster.audit().clear();
        each(n, |i| {
            let client = env.client.clone();
            let config = &config;
            async move {
                let ns = namespace_of(config, i);
                let exp = experiment(&ns, i);
                let api: Api<Experiment> = Api::namespaced(client, &ns);
                let name = exp.metadata.name.clone().expect("named");
                api.patch(&name, &scale::apply(), &Patch::Apply(&exp)).await.expect("experiment");
            }
        })
        .await;
        stage("experiments created");
        if let Err(progress) = scale::until_first_pauses(&env, n, config.timeout).await {
            panic!("{progress}");
        }
        stage("every experiment at its first pause");
        // Leases may have moved while the debug replicas starved (each replica still leads one).
        let at_kill = holders(&leases).await;
        assert_eq!(at_kill.iter().collect::<BTreeSet<_>>().len(), SHARDS, "each replica leads one shard: {at_kill:?}");

        // One writer per experiment: the holder of its shard.
        let ramp = writers(&env.cluster.audit().records(), &replicas);
        assert_eq!(ramp.len(), n, "every experiment was written for");
        let foreign = foreign_writes(&env.cluster.audit().records(), &replicas, &before);
        assert!(
            foreign.is_empty(),
            "{} writes by a replica not holding the shard: {:?}",
            foreign.len(),
            &foreign[..foreign.len().min(5)]
        );

        // SIGKILL the holder of shard 0: its leases stay until they expire.
        let victim = replicas.iter().position(|r| r.identity == at_kill[0]).expect("a replica holds shard 0");
        let killed_at = env.cluster.audit().records().len();
        assert!(replicas[victim].stop("-KILL", Duration::from_secs(20)).await, "the killed replica exits");
        let killed = Instant::now();
        until(
            "a survivor takes the dead replica's shard",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                let held = holders(&leases).await;
                if !held[0].is_empty() && held[0] != at_kill[0] { Ok(()) } else { Err(format!("holders {held:?}")) }
            },
        )
        .await;
        let takeover = killed.elapsed();
        let after = holders(&leases).await;
        eprintln!("shards: {at_kill:?} -> {after:?}; shard 0 taken {takeover:.2?} after the kill");
        assert!(
            takeover <= Duration::from_secs(LEASE_DURATION + LOOK + 2),
            "shard 0 taken {takeover:?} after the kill (lease {LEASE_DURATION} s, look {LOOK} s)"
        );
        assert_eq!(&after[1..], &at_kill[1..], "the survivors kept their own shards");

        // The new holder carries an edit of every experiment of the taken shard.
        let moved: Vec<usize> =
            (0..n).filter(|&i| shard(&(namespace_of(&config, i), format!("exp-{i}"))) == 0).collect();
        each(moved.len(), |k| {
            let i = moved[k];
            let api: Api<Experiment> = Api::namespaced(env.client.clone(), &namespace_of(&config, i));
            async move {
                let steps = json!([{"setWeight": 30}, {"pause": {}}]);
                let edit = json!({"spec": {"strategy": {"canary": {"steps": steps}}}});
                api.patch(&format!("exp-{i}"), &PatchParams::default(), &Patch::Merge(edit)).await.expect("edit");
            }
        })
        .await;
        let services: Api<VirtualService> = Api::all(env.client.clone());
        let list = || async { services.list(&ListParams::default()).await.expect("list virtual services").items };
        let carried = |vs: &VirtualService| {
            let last = vs.spec.http.iter().flatten().last();
            let mut route = last.and_then(|h| h.route.as_ref()).into_iter().flatten();
            route.any(|d| d.destination.subset.as_deref() == Some("v2") && d.weight == Some(30))
        };
        let label = "routing the edit";
        if let Err(progress) = scale::until_every(&env, moved.len(), config.timeout, label, list, carried).await {
            panic!("the taken shard's edits: {progress}");
        }

        stage("the taken shard's edits routed");
        // A write's audit record is appended once its response is sent, after the store (and
        // so the wait above) has seen it.
        let audited = || async {
            let since = writers(&env.cluster.audit().records()[killed_at..], &replicas);
            let written = since.keys().filter(|k| shard(k) == 0).count();
            if written == moved.len() { Ok(()) } else { Err(format!("{written} of {} audited", moved.len())) }
        };
        until("the edits' writes audited", Duration::from_secs(10), Duration::from_millis(100), audited).await;
        // After the kill: the taken shard's experiments written by its new holder only, nobody
        // else's touched by anyone but their holder.
        let records = env.cluster.audit().records();
        let since = writers(&records[killed_at..], &replicas);
        let foreign = foreign_writes(&records, &replicas, &before);
        assert!(
            foreign.is_empty(),
            "{} writes by a replica not holding the shard: {:?}",
            foreign.len(),
            &foreign[..foreign.len().min(5)]
        );
        let taken = since.iter().filter(|(k, _)| shard(k) == 0);
        assert!(
            taken.clone().all(|(_, by)| by == &BTreeSet::from([after[0].clone()])),
            "the taken shard written by its new holder only"
        );
        assert_eq!(
            since.keys().filter(|k| shard(k) == 0).count(),
            moved.len(),
            "the new holder wrote for every experiment it took over"
        );

        for (k, r) in replicas.iter_mut().enumerate() {
            if k != victim {
                r.stop("-TERM", Duration::from_secs(20)).await;
            }
        }
        let _ = std::fs::remove_file(&kubeconfig);
        env.shutdown().await;
    })
    .await
    .expect("bounded: 10 minutes");
}
