//! Start the lab by hand and keep it up: prints the kubeconfig, topology,
//! etcd endpoints and certificate directory, and HAProxy's runtime API
//! (the topology names the Unix socket), then waits for `seconds`
//! (default 600) or Ctrl-C.
//!
//! `cargo run -p testlab --example lab -- 600`

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let lab = match testlab::Lab::start() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("the lab did not start: {e}");
            std::process::exit(2);
        }
    };
    println!("KUBECONFIG={}", lab.kubeconfig.display());
    println!("HACLI_TOPOLOGY={}", lab.topology.display());
    println!("HACLI_ETCD_ENDPOINTS={}", lab.etcd_endpoints().join(","));
    println!("HACLI_ETCD_PKI={}", lab.etcd_pki.display());
    println!(
        "# HAProxy runtime API: {} or tcp:{}",
        lab.lb_runtime_api(),
        lab.lb_tcp()
    );
    println!("# leader: {:?}", lab.etcd_leader());
    std::thread::sleep(std::time::Duration::from_secs(secs));
}
