//! How the Kubernetes API and etcd are reached (`--kubeconfig`,
//! `--etcd-*`): one flag group that both the gate's (`LiveArgs`) and a
//! plan's (`ClusterArgs`) flags flatten.

use std::path::PathBuf;

use kubeadm::EtcdTlsOverrides;

/// The kubeconfig and the etcd client settings.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig; by default KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (as `kubectl --context`); by default its current context.
    #[arg(long, env = "HACLI_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// etcd client URLs, comma-separated; by default the topology's `etcd.endpoints`, else every control-plane node's address on :2379.
    #[arg(long, env = "HACLI_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Directory with the etcd CA and client pair (kubeadm layout: ca.crt, healthcheck-client.{crt,key}); by default the topology's `etcd.pki`, else /etc/kubernetes/pki/etcd.
    #[arg(long, env = "HACLI_ETCD_PKI")]
    pub etcd_pki: Option<PathBuf>,
    /// etcd CA file (overrides --etcd-pki).
    #[arg(long, env = "ETCDCTL_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// etcd client certificate (overrides --etcd-pki).
    #[arg(long, env = "ETCDCTL_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// etcd client key (overrides --etcd-pki).
    #[arg(long, env = "ETCDCTL_KEY")]
    pub etcd_key: Option<PathBuf>,
}

impl KubeArgs {
    /// `reach` with these settings (the rest of it unchanged).
    pub fn reach(&self, reach: haops::Reach) -> haops::Reach {
        haops::Reach {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_tls: EtcdTlsOverrides {
                pki: self.etcd_pki.clone(),
                ca: self.etcd_cacert.clone(),
                cert: self.etcd_cert.clone(),
                key: self.etcd_key.clone(),
            },
            ..reach
        }
    }
}
