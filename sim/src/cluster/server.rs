//! `Cluster`: one running embedded API server (HTTPS listener, store, built-in controllers,
//! optionally the workload simulator and the traffic data plane) and the handles tests, the
//! demo and simulators use.

use crate::cluster::audit::Audit;
use crate::cluster::error::{Error, Result};
use crate::cluster::faults::Faults;
use crate::cluster::http::{self, AppState};
use crate::cluster::kubeconfig;
use crate::cluster::limits::ServerLimits;
use crate::cluster::resources::Gvr;
use crate::cluster::store::{Store, StoreConfig, WriteOptions};
use crate::cluster::{gc, lifecycle, service_accounts, tls, workloads};
use crate::traffic::feed::{self, ClusterDataplane};
use crate::traffic::{Dataplane, Metrics};
use forklane_core::clock::Clock;
use futures::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A controller run alongside the server for its whole life, working through the store
/// (e.g. the workload simulator that makes Deployments run).
pub type ControllerFn = Arc<dyn Fn(Store) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct ClusterConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Bearer token clients must present; random when `None`.
    pub token: Option<String>,
    pub store: StoreConfig,
    /// How often watches with `allowWatchBookmarks` get a bookmark.
    pub bookmark_interval: Duration,
    /// Extra controllers, started after the built-in ones (garbage collector, namespace
    /// and CRD cleanup, default service accounts).
    pub controllers: Vec<ControllerFn>,
    /// Record every resource request (see `Cluster::audit`); off by default.
    pub audit: bool,
    /// The time the API server writes (creation and deletion timestamps, managed fields, table
    /// ages) and the workload simulator runs on; `Clock::real()` by default.
    pub clock: Clock,
    /// Run the workload simulator: Deployments roll, pods start and terminate, endpoints
    /// follow. Off by default (Deployments stay inert).
    pub workloads: bool,
    /// Attach the traffic data plane: simulated apps behind every Service, a listener on
    /// 127.0.0.1:<nodePort> for every NodePort Service, metrics (see `Cluster::dataplane`).
    pub dataplane: bool,
    /// Bounds on bodies, connections and slow clients; kube-apiserver's by default.
    pub limits: ServerLimits,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            port: 0,
            token: None,
            store: StoreConfig::default(),
            bookmark_interval: Duration::from_secs(60),
            controllers: vec![],
            audit: false,
            clock: Clock::real(),
            workloads: false,
            dataplane: false,
            limits: ServerLimits::default(),
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("store", &self.store)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("controllers", &self.controllers.len())
            .field("audit", &self.audit)
            .field("clock", &self.clock)
            .field("workloads", &self.workloads)
            .field("dataplane", &self.dataplane)
            .field("limits", &self.limits)
            .finish()
    }
}

pub struct Cluster {
    store: Store,
    faults: Faults,
    audit: Audit,
    url: String,
    kubeconfig: String,
    client_config: kube::Config,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    controllers: Vec<JoinHandle<()>>,
    dataplane: Option<ClusterDataplane>,
}

/// Namespaces every cluster starts with.
const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

fn seed(store: &Store) -> Result<()> {
    let namespaces = Gvr::new("", "v1", "namespaces");
    let opts = WriteOptions { field_manager: Some("kube-apiserver".into()), ..Default::default() };
    for ns in INITIAL_NAMESPACES {
        store.create(&namespaces, None, json!({"metadata": {"name": ns}}), &opts)?;
    }
    // The apiserver's own Service, holding the first address of the service range.
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "clusterIP": crate::cluster::admission::KUBERNETES_SERVICE_IP,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
    });
    store.create(&Gvr::new("", "v1", "services"), Some("default"), service, &opts)?;
    service_accounts::sweep(store);
    Ok(())
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cluster {
    /// Starts a server on 127.0.0.1 and returns once it accepts connections.
    pub async fn start(config: ClusterConfig) -> Result<Cluster> {
        if config.limits.max_connections == 0 || config.limits.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(Error::Setup(format!(
                "limits.max_connections must be within 1..={}, got {}",
                tokio::sync::Semaphore::MAX_PERMITS,
                config.limits.max_connections
            )));
        }
        let tls = tls::generate()?;
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|e| Error::Setup(format!("binding 127.0.0.1:{}: {e}", config.port)))?;
        let addr = listener.local_addr().map_err(|e| Error::Setup(e.to_string()))?;
        let url = format!("https://{addr}");
        let token = config.token.clone().unwrap_or_else(random_token);
        let kubeconfig = kubeconfig::render(&url, &tls.ca_pem, &token);
        let client_config = {
            let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).map_err(|e| Error::Setup(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Setup(e.to_string()))?
        };

        let store = Store::new(config.store.clone(), config.clock);
        seed(&store)?;
        let faults = Faults::default();
        let audit = Audit::new(config.audit);
        let state = Arc::new(AppState {
            store: store.clone(),
            faults: faults.clone(),
            token,
            server_address: addr.to_string(),
            bookmark_interval: config.bookmark_interval,
            audit: audit.clone(),
            limits: config.limits.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(http::serve(
            listener,
            tls.server_config.clone(),
            http::router(state),
            config.limits.clone(),
            shutdown_rx,
        ));
        let mut controllers = vec![
            tokio::spawn(gc::run(store.clone())),
            tokio::spawn(lifecycle::run(store.clone())),
            tokio::spawn(service_accounts::run(store.clone())),
        ];
        if config.workloads {
            controllers.push(tokio::spawn(workloads::run(store.clone(), config.clock)));
        }
        for c in &config.controllers {
            controllers.push(tokio::spawn(c(store.clone())));
        }
        let dataplane =
            config.dataplane.then(|| feed::attach(store.clone(), Dataplane::new(Metrics::new()), config.clock));
        Ok(Cluster { store, faults, audit, url, kubeconfig, client_config, shutdown, server, controllers, dataplane })
    }

    /// A kube client authenticated against this cluster.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config.clone()).expect("a kube client from the generated kubeconfig")
    }

    /// The client configuration behind `client()`, to adjust timeouts and the like.
    pub fn client_config(&self) -> kube::Config {
        self.client_config.clone()
    }

    pub fn kubeconfig_yaml(&self) -> &str {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// In-process access to the objects, with the same semantics as the HTTP API.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The request audit log; empty unless `ClusterConfig::audit` was set.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The traffic data plane (`ClusterConfig::dataplane`): its `dataplane` for in-process
    /// requests and metrics, its `feed` for views of the cluster.
    pub fn dataplane(&self) -> Option<&ClusterDataplane> {
        self.dataplane.as_ref()
    }

    /// The clock of the API server and the simulator.
    pub fn clock(&self) -> Clock {
        self.store.clock()
    }

    /// Stops accepting, closes watches and connections, and stops the controllers and the
    /// data plane (its NodePort listeners close).
    pub async fn shutdown(self) {
        drop(self.dataplane);
        self.faults.cut_watches();
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        for c in self.controllers {
            c.abort();
        }
    }
}
