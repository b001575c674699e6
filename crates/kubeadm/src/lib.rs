//! `kubeadm`: the live backend for kubeadm clusters.
//!
//! - [`Observer`] fills a [`hacore::ClusterState`] from the Kubernetes API
//!   (`kube` + `k8s-openapi`), etcd (`etcd-client` with TLS client
//!   certificates), each apiserver's `/readyz` and Prometheus alerts, every
//!   probe concurrently under one overall deadline, and the load balancer's
//!   pool through HAProxy's runtime API ([`observe_load_balancer`], with
//!   crates/pfsense). A probe that fails or times out is recorded in
//!   `probeErrors`, so the rules answer "unknown".
//! - [`DisruptionLock`] is a `coordination.k8s.io/v1` Lease taken with
//!   optimistic concurrency: two racing gates can never both hold it, and a
//!   dead holder's lease expires after its TTL.
//!
//! Defaults follow kubeadm: etcd endpoints are the control-plane nodes'
//! addresses on :2379 and certificates are read from
//! `/etc/kubernetes/pki/etcd/{ca.crt,healthcheck-client.crt,healthcheck-client.key}`;
//! the kubeconfig comes from kube's standard inference (`KUBECONFIG`,
//! `~/.kube/config`, in-cluster service account).
//!
//! Where an observer looks, decided from the topology and the overrides
//! alone (this runs as a doctest: nothing is contacted):
//!
//! ```
//! use std::path::PathBuf;
//! use kubeadm::{EtcdTlsOverrides, ObjectRef, ObserverConfig};
//!
//! let (topology, _) = hacore::Topology::from_yaml("t.yaml", r#"
//! cluster: lab
//! controlPlaneEndpoint: { address: 10.0.0.11 }
//! nodes:
//!   - { name: m1, role: control-plane, address: 10.0.0.11 }
//!   - { name: m2, role: control-plane, address: 10.0.0.12 }
//!   - { name: m3, role: control-plane, address: 10.0.0.13 }
//! "#).unwrap();
//! let mut config = ObserverConfig::default();
//! // kubeadm's defaults: every master on :2379, the health-check client pair.
//! assert_eq!(config.etcd_endpoints(&topology)[0], "https://10.0.0.11:2379");
//! let tls = config.etcd_tls.resolve(&topology);
//! assert_eq!(tls.key, PathBuf::from("/etc/kubernetes/pki/etcd/healthcheck-client.key"));
//! // Overrides win, one file at a time.
//! config.etcd_tls = EtcdTlsOverrides { pki: Some("/run/secrets/etcd".into()), ..Default::default() };
//! assert_eq!(config.etcd_tls.resolve(&topology).ca, PathBuf::from("/run/secrets/etcd/ca.crt"));
//! config.lock = ObjectRef::parse("--lock-lease", "ops/upgrade-lock").unwrap();
//! assert_eq!(config.lock.to_string(), "ops/upgrade-lock");
//! assert!(ObjectRef::parse("--lock-lease", "no-namespace").is_err());
//! ```
//!
//! Observe, decide and take the lock, as `hacli gate --lock` does (needs a
//! cluster, so it is only compiled here):
//!
//! ```no_run
//! # async fn gate() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use hacore::{Action, Policy, Request, evaluate};
//! use kubeadm::{DisruptionLock, Observer, ObserverConfig};
//!
//! let (topology, _) = hacore::Topology::load("topology.yaml".as_ref())?;
//! let config = ObserverConfig { deadline: Duration::from_secs(2), ..Default::default() };
//! let lease = config.lock.clone();
//! let observer = Observer::new(topology.clone(), config).await?;
//! let state = observer.observe().await; // a failed probe makes rules "unknown"
//! let now = jiff::Timestamp::now();
//! let policy = Policy::for_action(Action::Reboot);
//! let request = Request { action: Action::Reboot, target: "m2", requester: Some("me") };
//! let mut verdict = evaluate(&topology, &state, &policy, &request, now)?;
//! if verdict.allowed() {
//!     DisruptionLock::new(observer.client().clone(), lease)
//!         .take_for(&mut verdict, "me", Duration::from_secs(1800), now, Duration::from_secs(2))
//!         .await;
//! }
//! println!("{}", verdict.decision);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod addresses;
pub mod config;
pub mod control_plane;
pub mod discover;
pub mod drill;
pub mod error;
#[doc(hidden)]
pub mod etcd_alarm;
pub mod etcd_latency;
pub mod etcd_leader;
pub mod lb;
pub mod live;
pub mod lock;
pub mod masters;
pub mod measure;
pub mod observe;
pub mod prometheus;
pub mod reconcile;
pub mod recover;
pub mod redact;
pub mod silence;
pub mod snapshot;
pub mod traffic;

pub use config::{EtcdTls, EtcdTlsOverrides, ObjectRef, ObserverConfig, PrometheusSource};
pub use error::Error;
pub use lb::observe_load_balancer;
pub use live::{LiveObserver, SystemClock};
pub use lock::{Acquire, DisruptionLock, Holder as LockHolder, KEPT_ANNOTATION};
pub use observe::{Observer, Reads, Timings};
pub use redact::{redact_url, redact_urls_in};

/// Build a Kubernetes client: from `kubeconfig` if given, else by kube's
/// standard inference.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    kube_client_in(kubeconfig, None).await
}

/// [`kube_client`] with the kubeconfig's context `context` instead of its
/// current context (`kubectl --context`).
pub async fn kube_client_in(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client, Error> {
    let config = kube_config_in(kubeconfig, context).await?;
    client_for(config).map_err(|e| Error::KubeConfig {
        path: kubeconfig.map(Into::into),
        source: Box::new(e),
    })
}

/// A client for `config` that speaks HTTP/2 when the server offers it (as
/// `kubectl` does), so concurrent reads share one TLS connection instead of
/// queueing on one HTTP/1.1 connection or opening more. The stack is kube's
/// own (base URI, credentials including exec plugins, extra headers) over a
/// connector with both HTTP versions; with a proxy configured, kube's default
/// client (HTTP/1.1) is used instead.
pub fn client_for(config: kube::Config) -> Result<kube::Client, kube::Error> {
    client_and_version(config, None).map(|(c, _)| c)
}

/// What a Kubernetes client's connector saw of its connections.
#[derive(Debug, Clone)]
pub(crate) struct KubeConn {
    /// Whether the last connection negotiated HTTP/2 (ALPN), so requests can
    /// go together on it.
    pub h2: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Counts connections established (TLS done, HTTP version known).
    pub established: tokio::sync::watch::Receiver<u64>,
}

/// A connector that records, for each connection it makes, whether it
/// negotiated HTTP/2, and announces it. Over HTTP/2 hyper's pool shares a
/// connection as soon as it is established, so the observer can send the
/// rest of its reads then, instead of after the first answer.
#[derive(Clone)]
struct Announce<C> {
    inner: C,
    h2: std::sync::Arc<std::sync::atomic::AtomicBool>,
    established: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl<C> tower::Service<http::Uri> for Announce<C>
where
    C: tower::Service<http::Uri>,
    C::Response: hyper_util::client::legacy::connect::Connection,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<C::Response, C::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let (h2, established) = (self.h2.clone(), self.established.clone());
        Box::pin(async move {
            let io = connecting.await?;
            use hyper_util::client::legacy::connect::Connection as _;
            let negotiated = io.connected().is_negotiated_h2();
            h2.store(negotiated, std::sync::atomic::Ordering::Relaxed);
            established.send_modify(|n| *n += 1);
            Ok(io)
        })
    }
}

/// [`client_for`], over `tls` when given (the TLS settings built from the
/// same config, shared between clients), and what its connector sees of its
/// connections (with a proxy, nothing: requests then go one at a time).
pub(crate) fn client_and_version(
    config: kube::Config,
    tls: Option<rustls::ClientConfig>,
) -> Result<(kube::Client, KubeConn), kube::Error> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use kube::client::ConfigExt as _;
    use tower::ServiceBuilder;

    let h2 = Arc::new(AtomicBool::new(false));
    let (established, established_rx) = tokio::sync::watch::channel(0);
    let conn = KubeConn {
        h2: h2.clone(),
        established: established_rx,
    };
    if config.proxy_url.is_some() {
        return Ok((kube::Client::try_from(config)?, conn));
    }
    let tls = match tls {
        Some(tls) => tls,
        None => config.rustls_client_config()?,
    };
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                kube::Error::Service(
                    format!("tls-server-name `{name}` is not a valid server name: {e}").into(),
                )
            })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let connector = Announce {
        inner: builder.enable_http1().enable_http2().wrap_connector(http),
        h2,
        established: Arc::new(established),
    };
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok((kube::Client::new(service, config.default_namespace), conn))
}

/// The client configuration (see [`kube_client`]).
pub async fn kube_config(kubeconfig: Option<&std::path::Path>) -> Result<kube::Config, Error> {
    kube_config_in(kubeconfig, None).await
}

/// The client configuration with the kubeconfig's context `context`
/// (else its current context). Without a kubeconfig file, a context is
/// looked up in kube's default kubeconfig (KUBECONFIG, ~/.kube/config);
/// without either, kube's inference (the in-cluster service account too).
pub async fn kube_config_in(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Config, Error> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let failed = |e: kube::config::KubeconfigError| Error::KubeConfig {
        path: kubeconfig.map(Into::into),
        source: Box::new(e),
    };
    match (kubeconfig, context) {
        (Some(p), _) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(failed)?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(failed)
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(failed),
        (None, None) => kube::Config::infer().await.map_err(|e| Error::KubeConfig {
            path: None,
            source: Box::new(e),
        }),
    }
}

pub(crate) fn to_jiff(
    t: &k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc>,
) -> jiff::Timestamp {
    jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or_default()
}

pub(crate) fn to_chrono(
    t: jiff::Timestamp,
) -> k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc> {
    k8s_openapi::chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
        .unwrap_or_default()
}
