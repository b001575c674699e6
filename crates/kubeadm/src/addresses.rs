//! Whether an address is free, asked of its own network.
//!
//! A TCP connection from here proves little: a host whose firewall drops
//! every packet answers no connection, and an address on another network
//! may be routed nowhere. Only the address's own link knows: a node on the
//! same subnet (reached over SSH) resolves the address as a neighbour
//! (ARP, or NDP for IPv6): it sends a packet to it (`ping`, or a UDP
//! datagram through bash's `/dev/udp` where ping is not allowed) and reads
//! the neighbour table (`ip neigh`). A host that answers ARP is there,
//! whatever its firewall drops (the kernel answers ARP below the IP
//! firewall); a resolution that fails is an address nothing answers for.
//!
//! - **in use**: the node itself holds the address (`ip route get` says
//!   `local`), or the neighbour answered (`REACHABLE`, or a `PERMANENT`
//!   entry), or a hardware address was known for it and not confirmed
//!   again in the wait (`STALE`, `DELAY`, `PROBE`: something answered for
//!   it not long ago);
//! - **free**: the resolution this probe started failed (`FAILED`);
//! - **unknown**, never free: no node is on the address's subnet (its route
//!   goes through a gateway), no node could be reached, the link resolves
//!   no neighbours (`NOARP`), or the resolution neither answered nor
//!   failed within the wait.
//!
//! Nothing here needs root: `ip route get`, `ip neigh show` and a packet.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ssh::{Cmd, Session};
use tokio::time::Instant;

/// What the network says of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressUse {
    /// Nothing answered for it on its link.
    Free {
        /// The node it was probed from.
        node: String,
    },
    /// Something holds it.
    InUse {
        /// The node it was probed from.
        node: String,
        /// What was seen (`answers ARP as 02:00:..`).
        evidence: String,
    },
    /// The probe could not decide (never to be read as free).
    Unknown {
        /// Why, per node tried.
        reason: String,
    },
}

impl AddressUse {
    /// Whether the address is free (only when the probe decided so).
    pub fn is_free(&self) -> bool {
        matches!(self, AddressUse::Free { .. })
    }
}

impl fmt::Display for AddressUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressUse::Free { node } => {
                write!(f, "free (nothing answered for it, seen from {node})")
            }
            AddressUse::InUse { node, evidence } => {
                write!(f, "in use: {evidence} (seen from {node})")
            }
            AddressUse::Unknown { reason } => write!(f, "unknown, so not free: {reason}"),
        }
    }
}

/// How a node reaches an address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// One of the node's own addresses.
    Local,
    /// On a link of the node (no gateway): `dev`.
    OnLink(String),
    /// Anything else (through a gateway, unreachable, an error): why.
    Elsewhere(String),
}

/// `ip -o route get ADDR`'s first line.
fn parse_route(line: &str) -> Route {
    let w: Vec<&str> = line.split_whitespace().collect();
    let dev = w
        .iter()
        .position(|x| *x == "dev")
        .and_then(|i| w.get(i + 1))
        .map(|d| d.to_string());
    match (w.first().copied(), dev) {
        (Some("local"), _) => Route::Local,
        (Some(kind), _)
            if [
                "broadcast",
                "multicast",
                "unreachable",
                "prohibit",
                "blackhole",
                "throw",
            ]
            .contains(&kind) =>
        {
            Route::Elsewhere(format!("its route is `{}`", line.trim()))
        }
        _ if w.contains(&"via") => Route::Elsewhere(format!(
            "not on its network (the route goes through a gateway: `{}`)",
            line.trim()
        )),
        (_, Some(dev)) => Route::OnLink(dev),
        _ => Route::Elsewhere(format!("no route: `{}`", line.trim())),
    }
}

/// One `ip neigh show` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Neigh {
    dev: String,
    lladdr: Option<String>,
    states: Vec<String>,
}

impl Neigh {
    fn has(&self, state: &str) -> bool {
        self.states.iter().any(|s| s == state)
    }
}

/// `ip neigh show` lines (`ADDR dev IF [lladdr MAC] [router] STATE...`),
/// by address.
fn parse_neigh(text: &str) -> BTreeMap<IpAddr, Neigh> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(addr) = w.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
            continue;
        };
        let mut n = Neigh {
            dev: String::new(),
            lladdr: None,
            states: Vec::new(),
        };
        let mut i = 1;
        while i < w.len() {
            match w[i] {
                "dev" | "lladdr" | "proto" | "vrf" | "nomaster" if i + 1 < w.len() => {
                    if w[i] == "dev" {
                        n.dev = w[i + 1].to_string();
                    } else if w[i] == "lladdr" {
                        n.lladdr = Some(w[i + 1].to_string());
                    }
                    i += 2;
                }
                s if s.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    n.states.push(s.to_string());
                    i += 1;
                }
                _ => i += 1,
            }
        }
        out.insert(addr, n);
    }
    out
}

/// What is followed of one address during the probe.
#[derive(Debug, Clone, Default)]
struct Track {
    /// A FAILED entry was there before the probe sent anything.
    failed_before: bool,
    /// Since the probe sent its packet, a poll saw it not FAILED (absent,
    /// INCOMPLETE...): a FAILED seen after that is this probe's.
    unfailed_since: bool,
    last: Option<Neigh>,
}

/// The verdict on one address from its track, or None to keep waiting;
/// `last_poll`: the wait is over, decide.
fn decide(t: &Track, wait: Duration, last_poll: bool) -> Option<Result<String, String>> {
    // Ok(evidence): in use; Err(reason): undecided; "free" is Ok("") below.
    let n = t.last.as_ref();
    if let Some(n) = n {
        let mac = n.lladdr.clone().unwrap_or_default();
        if n.has("NOARP") {
            return Some(Err(format!("{} resolves no neighbours (NOARP)", n.dev)));
        }
        if (n.has("REACHABLE") || n.has("PERMANENT")) && !mac.is_empty() {
            let how = if n.has("PERMANENT") {
                "a permanent neighbour entry"
            } else {
                "answers"
            };
            return Some(Ok(format!("{how} as {mac} on {}", n.dev)));
        }
        if n.has("FAILED") && (t.unfailed_since || !t.failed_before) {
            return Some(Ok(String::new()));
        }
        if last_poll && !mac.is_empty() {
            return Some(Ok(format!(
                "{mac} answered for it on {} not long ago and was not confirmed again within {wait:?} ({})",
                n.dev,
                n.states.join(" ")
            )));
        }
    }
    if !last_poll {
        return None;
    }
    Some(Err(match n {
        Some(n) if n.has("FAILED") => {
            "no new neighbour resolution was seen (could the node send it a packet? ping and bash are used)".into()
        }
        Some(n) => format!(
            "neither an answer nor a failure within {wait:?} ({})",
            n.states.join(" ")
        ),
        None => format!("no neighbour resolution was seen within {wait:?}"),
    }))
}

const ROUTES: &str =
    r#"for a; do r=$(ip -o route get "$a" 2>&1 | head -n 1); printf '%s\t%s\n' "$a" "$r"; done"#;
const NEIGH: &str = r#"for a; do ip neigh show to "$a"; done"#;
/// One packet to each address, in the background (the command ends at
/// once): ping, or a UDP datagram where ping is missing or not allowed.
const SEND: &str = r#"for a; do (ping -n -c 1 -W 2 "$a" || bash -c ': > "/dev/udp/$1/9"' bash "$a") </dev/null >/dev/null 2>&1 & done"#;

const POLL: Duration = Duration::from_millis(200);
/// How long a resolution may take: ARP fails after 3 s (3 probes, 1 s
/// apart), and re-checks a hardware address it knew (`STALE`) after 5 s
/// more and 3 probes; an address that answers is known at once.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(9);
const COMMAND_DEADLINE: Duration = Duration::from_secs(10);

fn addr_args(cmd: Cmd, addrs: &[IpAddr]) -> Cmd {
    cmd.args(addrs.iter().map(|a| a.to_string())).sudo(false)
}

/// The neighbour entries of `addrs` on the node behind `s`.
async fn read_neigh(
    s: &Session,
    addrs: &[IpAddr],
) -> Result<BTreeMap<IpAddr, Neigh>, ssh::SshError> {
    let cmd = addr_args(Cmd::shell(NEIGH), addrs);
    let out = s.run_checked(&cmd, COMMAND_DEADLINE).await?;
    Ok(parse_neigh(&out.stdout_str()))
}

/// Resolve `addrs` (all on a link of the node behind `s`) as neighbours,
/// waiting up to `wait` for each to answer or fail: per address, Ok(None)
/// free, Ok(Some(evidence)) in use, Err(reason) undecided.
async fn resolve(
    s: &Session,
    addrs: &[IpAddr],
    wait: Duration,
) -> Result<BTreeMap<IpAddr, Result<Option<String>, String>>, ssh::SshError> {
    let before = read_neigh(s, addrs).await?;
    let mut tracks: BTreeMap<IpAddr, Track> = addrs
        .iter()
        .map(|a| {
            let n = before.get(a);
            (
                *a,
                Track {
                    failed_before: n.is_some_and(|n| n.has("FAILED")),
                    unfailed_since: false,
                    last: n.cloned(),
                },
            )
        })
        .collect();
    s.run_checked(&addr_args(Cmd::shell(SEND), addrs), COMMAND_DEADLINE)
        .await?;
    let until = Instant::now() + wait;
    let mut out = BTreeMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        let last_poll = Instant::now() >= until;
        let now = read_neigh(s, addrs).await?;
        for (a, t) in tracks.iter_mut() {
            if out.contains_key(a) {
                continue;
            }
            let n = now.get(a).cloned();
            if !n.as_ref().is_some_and(|n| n.has("FAILED")) {
                t.unfailed_since = true;
            }
            t.last = n;
            if let Some(v) = decide(t, wait, last_poll) {
                out.insert(*a, v.map(|e| (!e.is_empty()).then_some(e)));
            }
        }
        if out.len() == tracks.len() {
            return Ok(out);
        }
    }
}

/// Probe `addresses` from `nodes` (name and SSH settings, in the order to
/// try them: each address is probed from the first node on its subnet),
/// each resolution waiting up to `wait` (3 s is ARP's own failure time).
/// Every address gets a verdict; none is free unless a probe decided so.
pub async fn probe(
    nodes: &[(String, ssh::Config)],
    addresses: &[IpAddr],
    wait: Duration,
) -> BTreeMap<IpAddr, AddressUse> {
    let mut left: Vec<IpAddr> = addresses.to_vec();
    left.sort();
    left.dedup();
    let mut verdicts = BTreeMap::new();
    let mut why: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for (name, cfg) in nodes {
        if left.is_empty() {
            break;
        }
        let s = match Session::connect(cfg).await {
            Ok(s) => s,
            Err(e) => {
                for a in &left {
                    why.entry(*a).or_default().push(format!("{name}: {e}"));
                }
                continue;
            }
        };
        let routes = match s
            .run_checked(&addr_args(Cmd::shell(ROUTES), &left), COMMAND_DEADLINE)
            .await
        {
            Ok(out) => out.stdout_str().into_owned(),
            Err(e) => {
                for a in &left {
                    why.entry(*a).or_default().push(format!("{name}: {e}"));
                }
                s.close().await;
                continue;
            }
        };
        let mut on_link = Vec::new();
        for line in routes.lines() {
            let Some((a, route)) = line.split_once('\t') else {
                continue;
            };
            let Ok(a) = a.parse::<IpAddr>() else { continue };
            if !left.contains(&a) {
                continue;
            }
            match parse_route(route) {
                Route::Local => {
                    verdicts.insert(
                        a,
                        AddressUse::InUse {
                            node: name.clone(),
                            evidence: format!("it is an address of {name} itself"),
                        },
                    );
                }
                Route::OnLink(_) => on_link.push(a),
                Route::Elsewhere(r) => why.entry(a).or_default().push(format!("{name}: {r}")),
            }
        }
        if !on_link.is_empty() {
            match resolve(&s, &on_link, wait).await {
                Ok(found) => {
                    for (a, v) in found {
                        match v {
                            Ok(None) => {
                                verdicts.insert(a, AddressUse::Free { node: name.clone() });
                            }
                            Ok(Some(evidence)) => {
                                verdicts.insert(
                                    a,
                                    AddressUse::InUse {
                                        node: name.clone(),
                                        evidence,
                                    },
                                );
                            }
                            Err(r) => why.entry(a).or_default().push(format!("{name}: {r}")),
                        }
                    }
                }
                Err(e) => {
                    for a in &on_link {
                        why.entry(*a).or_default().push(format!("{name}: {e}"));
                    }
                }
            }
        }
        s.close().await;
        left.retain(|a| !verdicts.contains_key(a));
    }
    for a in left {
        let reason = why
            .remove(&a)
            .map(|r| r.join("; "))
            .unwrap_or_else(|| "no node to probe it from".into());
        verdicts.insert(a, AddressUse::Unknown { reason });
    }
    verdicts
}

/// The SSH settings of each node of `topology` (control-plane nodes
/// first), as the control-plane backend reaches them.
pub fn node_ssh_configs(
    topology: &hacore::Topology,
    opts: &crate::control_plane::ControlPlaneOptions,
) -> Vec<(String, ssh::Config)> {
    let base = crate::control_plane::ssh_base(topology, opts);
    let mut nodes: Vec<&hacore::topology::Node> = topology.control_plane_nodes().collect();
    nodes.extend(topology.nodes.iter().filter(|n| !n.is_control_plane()));
    nodes
        .into_iter()
        .map(|n| {
            let mut cfg = base.clone();
            cfg.target.name = n.name.clone();
            cfg.target.host = n.address.to_string();
            (n.name.clone(), cfg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_say_whether_the_address_is_on_the_nodes_link() {
        assert_eq!(
            parse_route("198.18.5.9 dev eth0 src 198.18.5.2 uid 0 \\    cache "),
            Route::OnLink("eth0".into())
        );
        assert_eq!(
            parse_route("local 198.18.5.2 dev lo table local src 198.18.5.2 uid 0"),
            Route::Local
        );
        assert!(matches!(
            parse_route("198.19.7.1 via 198.18.5.1 dev eth0 src 198.18.5.2 uid 0"),
            Route::Elsewhere(r) if r.contains("gateway")
        ));
        assert!(matches!(
            parse_route("RTNETLINK answers: Network is unreachable"),
            Route::Elsewhere(r) if r.contains("no route")
        ));
        assert!(matches!(
            parse_route("broadcast 198.18.5.255 dev eth0 table local src 198.18.5.2"),
            Route::Elsewhere(_)
        ));
        assert_eq!(
            parse_route("fd00::9 from :: dev eth0 proto kernel src fd00::2 metric 256 pref medium"),
            Route::OnLink("eth0".into())
        );
    }

    #[test]
    fn neighbour_entries_are_read_with_their_states() {
        let t = "198.18.5.9 dev eth0 lladdr 02:00:c6:12:05:09 REACHABLE\n198.18.5.10 dev eth0 FAILED\n198.18.5.11 dev eth0 INCOMPLETE\nfe80::1 dev eth0 lladdr 02:00:00:00:00:01 router STALE\n198.18.5.12 dev eth0 lladdr 02:00:00:00:00:12 PROBE\n";
        let n = parse_neigh(t);
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            n[&a("198.18.5.9")],
            Neigh {
                dev: "eth0".into(),
                lladdr: Some("02:00:c6:12:05:09".into()),
                states: vec!["REACHABLE".into()]
            }
        );
        assert!(n[&a("198.18.5.10")].has("FAILED") && n[&a("198.18.5.10")].lladdr.is_none());
        assert!(n[&a("198.18.5.11")].has("INCOMPLETE"));
        assert!(n[&a("fe80::1")].has("STALE"));
        assert_eq!(n.len(), 5);
    }

    fn track(failed_before: bool, unfailed_since: bool, line: Option<&str>) -> Track {
        Track {
            failed_before,
            unfailed_since,
            last: line.map(|l| parse_neigh(l).into_values().next().unwrap()),
        }
    }

    #[test]
    fn only_a_failed_resolution_of_this_probe_is_free_and_the_undecided_is_unknown() {
        let w = Duration::from_secs(3);
        let reach = "198.18.5.9 dev eth0 lladdr 02:00:c6:12:05:09 REACHABLE";
        let failed = "198.18.5.9 dev eth0 FAILED";
        let stale = "198.18.5.9 dev eth0 lladdr 02:00:c6:12:05:09 STALE";
        let incomplete = "198.18.5.9 dev eth0 INCOMPLETE";
        // An answer: in use at once.
        assert!(
            matches!(decide(&track(false, true, Some(reach)), w, false), Some(Ok(e)) if e.contains("02:00:c6:12:05:09"))
        );
        // This probe's resolution failed: free.
        assert_eq!(
            decide(&track(false, true, Some(failed)), w, false),
            Some(Ok(String::new()))
        );
        assert_eq!(
            decide(&track(true, true, Some(failed)), w, false),
            Some(Ok(String::new()))
        );
        // A FAILED left from before, never seen to change: not this
        // probe's; at the end, unknown.
        assert_eq!(decide(&track(true, false, Some(failed)), w, false), None);
        assert!(matches!(
            decide(&track(true, false, Some(failed)), w, true),
            Some(Err(_))
        ));
        // Still resolving, or nothing seen: wait, then unknown.
        assert_eq!(
            decide(&track(false, true, Some(incomplete)), w, false),
            None
        );
        assert!(matches!(
            decide(&track(false, true, Some(incomplete)), w, true),
            Some(Err(_))
        ));
        assert!(matches!(
            decide(&track(false, true, None), w, true),
            Some(Err(_))
        ));
        // Known not long ago, not confirmed in the wait: in use.
        assert_eq!(decide(&track(false, true, Some(stale)), w, false), None);
        assert!(
            matches!(decide(&track(false, true, Some(stale)), w, true), Some(Ok(e)) if !e.is_empty())
        );
        // A link without neighbour resolution decides nothing.
        assert!(matches!(
            decide(&track(false, true, Some("198.18.5.9 dev wg0 NOARP")), w, false),
            Some(Err(r)) if r.contains("NOARP")
        ));
    }
}
