//! The one error type of the live backend.

use std::path::PathBuf;

/// What went wrong talking to a live cluster. Messages name the file,
/// endpoint or object involved; secrets (tokens, keys) never appear.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig / in-cluster configuration.
    #[error("no usable Kubernetes client configuration{} (set KUBECONFIG or --kubeconfig)", .path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    KubeConfig {
        /// The kubeconfig file given, if any.
        path: Option<PathBuf>,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A certificate or key file for etcd could not be read.
    #[error(
        "cannot read etcd TLS file {path} (set --etcd-pki, or --etcd-cacert/--etcd-cert/--etcd-key)"
    )]
    EtcdTlsFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A bad endpoint URL.
    #[error("{what} `{url}` is not a valid URL: {reason}")]
    BadUrl {
        /// Which setting.
        what: &'static str,
        /// The value.
        url: String,
        /// Why.
        reason: String,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {what}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// A request did not finish in time.
    #[error("{what}: no answer within {ms} ms")]
    Timeout {
        /// What was being done.
        what: String,
        /// The deadline.
        ms: u128,
    },
    /// The lock lease is malformed.
    #[error("lock Lease {namespace}/{name}: {reason}")]
    BadLease {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Before a drill's disruption, the API or the node's load-balancer
    /// server was not healthy: nothing was disrupted.
    #[error("not disrupting {node}: {reason}")]
    NotHealthy {
        /// The node.
        node: String,
        /// What was wrong.
        reason: String,
    },
    /// A disruption step on a node was refused or failed (moving etcd
    /// leadership, removing a member).
    #[error("{node}: {reason}")]
    Disruption {
        /// The node.
        node: String,
        /// Why, and what to do.
        reason: String,
    },
}

impl Error {
    /// The message with its causes, `a: b: c`, for one-line reports; a URL
    /// in a cause is shown without its credentials.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        crate::redact_urls_in(&out).into_owned()
    }

    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            what: what.into(),
            source: Box::new(source),
        }
    }
}
