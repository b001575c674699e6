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
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod lb;
pub mod lock;
pub mod observe;

pub use config::{EtcdTls, EtcdTlsOverrides, ObjectRef, ObserverConfig};
pub use error::Error;
pub use lb::observe_load_balancer;
pub use lock::{Acquire, DisruptionLock};
pub use observe::{Observer, Timings};

/// Build a Kubernetes client: from `kubeconfig` if given, else by kube's
/// standard inference.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = kube_config(kubeconfig).await?;
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

/// [`client_for`], over `tls` when given (the TLS settings built from the
/// same config, shared between clients), and a flag that says whether the
/// last response came over HTTP/2 (so further requests can go together on
/// the one connection).
pub(crate) fn client_and_version(
    config: kube::Config,
    tls: Option<rustls::ClientConfig>,
) -> Result<(kube::Client, std::sync::Arc<std::sync::atomic::AtomicBool>), kube::Error> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use kube::client::ConfigExt as _;
    use tower::ServiceBuilder;

    let h2 = Arc::new(AtomicBool::new(false));
    if config.proxy_url.is_some() {
        return Ok((kube::Client::try_from(config)?, h2));
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
    let connector = builder.enable_http1().enable_http2().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_response({
            let h2 = h2.clone();
            move |r: http::Response<hyper::body::Incoming>| {
                h2.store(r.version() == http::Version::HTTP_2, Ordering::Relaxed);
                r
            }
        })
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok((kube::Client::new(service, config.default_namespace), h2))
}

/// The client configuration (see [`kube_client`]).
pub async fn kube_config(kubeconfig: Option<&std::path::Path>) -> Result<kube::Config, Error> {
    match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| Error::KubeConfig {
                path: Some(p.into()),
                source: Box::new(e),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::KubeConfig {
                    path: Some(p.into()),
                    source: Box::new(e),
                })
        }
        None => kube::Config::infer().await.map_err(|e| Error::KubeConfig {
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
