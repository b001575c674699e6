//! `show stat`: HAProxy's CSV statistics, read by column name.

use std::net::{IpAddr, SocketAddr};

use hacore::state::{BackendStatus, LbBackend, LbState};

/// A server's status as `show stat` prints it (column `status`).
///
/// HAProxy appends `x/y` while a server is between states: `UP 1/3` is a
/// server still UP (and still routed to) whose last check(s) failed, that
/// goes DOWN after the remaining failures; `DOWN 1/2` is a server passing
/// checks that comes UP after the remaining successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    /// `UP`: passing checks, taking traffic.
    Up,
    /// `UP x/y`: still taking traffic, but its checks started failing.
    GoingDown {
        /// HAProxy's first number: checks it may still fail before DOWN.
        health: u32,
        /// HAProxy's second number (the server's `fall`).
        fall: u32,
    },
    /// `DOWN`: failing checks, no traffic.
    Down,
    /// `DOWN x/y`: passing checks again, no traffic yet.
    GoingUp {
        /// Checks passed so far.
        health: u32,
        /// Checks needed (the server's `rise`).
        rise: u32,
    },
    /// `NOLB` (also `NOLB x/y`): up, but takes no new load-balanced traffic.
    Nolb,
    /// `DRAIN` (also `DRAIN x/y`, `DRAIN (agent)`): administratively draining.
    Drain,
    /// `MAINT` (also `MAINT (via BE/SRV)`, `MAINT (resolution)`):
    /// administratively in maintenance.
    Maint,
    /// `no check`: HAProxy does not check it and sends it traffic blindly.
    NoCheck,
}

fn progress(rest: &str) -> Option<(u32, u32)> {
    let (a, b) = rest.trim().split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// `word`, `word x/y` or `word (note)`: the part after `word`, if `s` is
/// one of those.
fn after<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(word)?;
    (rest.is_empty() || rest.starts_with(' ') || rest.starts_with('(')).then(|| rest.trim())
}

impl ServerStatus {
    /// Parse `show stat`'s status text; None for anything not listed on
    /// [`ServerStatus`] (never guessed).
    pub fn parse(s: &str) -> Option<ServerStatus> {
        let s = s.trim();
        if s == "no check" {
            return Some(ServerStatus::NoCheck);
        }
        if let Some(rest) = after(s, "UP") {
            return if rest.is_empty() {
                Some(ServerStatus::Up)
            } else {
                progress(rest).map(|(health, fall)| ServerStatus::GoingDown { health, fall })
            };
        }
        if let Some(rest) = after(s, "DOWN") {
            return if rest.is_empty() {
                Some(ServerStatus::Down)
            } else {
                progress(rest).map(|(health, rise)| ServerStatus::GoingUp { health, rise })
            };
        }
        let noted =
            |rest: &str| rest.is_empty() || progress(rest).is_some() || rest.starts_with('(');
        if after(s, "NOLB").is_some_and(noted) {
            return Some(ServerStatus::Nolb);
        }
        if after(s, "DRAIN").is_some_and(noted) {
            return Some(ServerStatus::Drain);
        }
        if after(s, "MAINT").is_some_and(|r| r.is_empty() || r.starts_with('(')) {
            return Some(ServerStatus::Maint);
        }
        None
    }

    /// The status the safety rules use, or why there is none.
    ///
    /// `UP x/y` maps to DOWN: HAProxy still routes to the server, but one
    /// whose checks have started failing is not a backend a disruption of
    /// another master may count on (the rules count only UP backends as
    /// the ones that stay), so the gate is stricter, never looser, than
    /// HAProxy's own view. `DOWN x/y` is DOWN (not routed yet). `no check`
    /// has no mapping: HAProxy does not know whether that apiserver is
    /// ready, so neither can the gate.
    pub fn backend_status(self) -> Result<BackendStatus, &'static str> {
        Ok(match self {
            ServerStatus::Up => BackendStatus::Up,
            ServerStatus::GoingDown { .. } | ServerStatus::Down | ServerStatus::GoingUp { .. } => {
                BackendStatus::Down
            }
            ServerStatus::Nolb => BackendStatus::Nolb,
            ServerStatus::Drain => BackendStatus::Drain,
            ServerStatus::Maint => BackendStatus::Maint,
            ServerStatus::NoCheck => {
                return Err(
                    "HAProxy does not health-check it, so whether its apiserver is ready is not known: add `check` with an HTTPS GET /readyz health check to the pool",
                );
            }
        })
    }
}

/// One server row of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// The backend's runtime name (`pxname`), e.g. `k8s-apiserver_ipvANY` on pfSense.
    pub backend: String,
    /// The server's name (`svname`).
    pub server: String,
    /// Its status, as printed (`status`).
    pub status_text: String,
    /// Its status, parsed; None when HAProxy printed something unknown.
    pub status: Option<ServerStatus>,
    /// Current sessions (`scur`).
    pub sessions: Option<u64>,
    /// Last health check result (`check_status`, e.g. `L7OK`, `L4CON`),
    /// without HAProxy's `* ` prefix for a check in progress.
    pub check_status: Option<String>,
    /// The server's address (`addr`, HAProxy >= 1.9).
    pub address: Option<SocketAddr>,
}

impl ServerStat {
    /// As hacore's backend, or why it cannot be one.
    pub fn to_backend(&self) -> Result<LbBackend, String> {
        let status = self
            .status
            .ok_or_else(|| format!("status `{}` is not one hacli knows", self.status_text))?
            .backend_status()
            .map_err(|why| format!("status `{}`: {why}", self.status_text))?;
        Ok(LbBackend {
            server: self.server.clone(),
            address: self.address,
            status,
            sessions: self.sessions,
        })
    }
}

/// A parsed `show stat` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every server row (not the FRONTEND/BACKEND aggregates), in order.
    pub servers: Vec<ServerStat>,
    /// Every backend (a proxy with a BACKEND row), in order.
    pub backends: Vec<String>,
}

/// Why a pool could not be read from `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// No backend by that name (or a pfSense-suffixed one).
    Missing,
    /// More than one pfSense-suffixed backend matches.
    Ambiguous(Vec<String>),
    /// A server's status cannot be used.
    Server {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
}

/// The suffixes pfSense's HAProxy package appends to a pool's name to form
/// the runtime backend name, by address family.
pub const PFSENSE_SUFFIXES: [&str; 3] = ["_ipvANY", "_ipv4", "_ipv6"];

fn parse_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    // An IPv6 address without brackets: `::1:6443`.
    let (ip, port) = s.rsplit_once(':')?;
    Some(SocketAddr::new(
        ip.parse::<IpAddr>().ok()?,
        port.parse().ok()?,
    ))
}

impl Stats {
    /// Parse `show stat` output: a `# pxname,svname,...` header, then CSV
    /// rows. Columns are found by name; `pxname`, `svname`, `scur` and
    /// `status` must be there, `check_status` and `addr` may be.
    pub fn parse(text: &str) -> Result<Stats, String> {
        let body = text.trim_start();
        let Some(body) = body.strip_prefix("# ") else {
            let first = body.lines().next().unwrap_or("").trim();
            return Err(if first.is_empty() {
                "an empty answer, not `show stat` CSV".into()
            } else {
                format!("`{first}`, not `show stat` CSV (it starts with `# pxname,svname,`)")
            });
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(body.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| format!("the CSV header: {e}"))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let need =
            |name: &str| col(name).ok_or_else(|| format!("no `{name}` column in the header"));
        let (px, sv, scur, status) = (
            need("pxname")?,
            need("svname")?,
            need("scur")?,
            need("status")?,
        );
        let (check, addr) = (col("check_status"), col("addr"));
        let mut stats = Stats::default();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| format!("row {}: {e}", i + 1))?;
            if rec.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let field = |c: usize| rec.get(c).map(str::trim).unwrap_or("");
            let opt = |c: Option<usize>| c.map(field).filter(|s| !s.is_empty());
            let (pxname, svname) = (field(px), field(sv));
            if pxname.is_empty() || svname.is_empty() {
                return Err(format!("row {}: no pxname or svname", i + 1));
            }
            match svname {
                "FRONTEND" => continue,
                "BACKEND" => {
                    stats.backends.push(pxname.to_string());
                    continue;
                }
                _ => {}
            }
            let sessions = match field(scur) {
                "" => None,
                n => Some(
                    n.parse::<u64>()
                        .map_err(|_| format!("{pxname}/{svname}: scur `{n}` is not a number"))?,
                ),
            };
            let status_text = field(status).to_string();
            stats.servers.push(ServerStat {
                backend: pxname.to_string(),
                server: svname.to_string(),
                status: ServerStatus::parse(&status_text),
                status_text,
                sessions,
                check_status: opt(check).map(|c| c.trim_start_matches("* ").to_string()),
                address: opt(addr).and_then(parse_address),
            });
        }
        Ok(stats)
    }

    /// The runtime backend name for `pool`: `pool` itself, else the one
    /// pfSense-suffixed name (`pool_ipvANY`, `pool_ipv4`, `pool_ipv6`).
    pub fn resolve(&self, pool: &str) -> Result<&str, PoolError> {
        let names = || {
            self.backends
                .iter()
                .chain(self.servers.iter().map(|s| &s.backend))
                .map(String::as_str)
        };
        if let Some(b) = names().find(|b| *b == pool) {
            return Ok(b);
        }
        let found: Vec<&str> = PFSENSE_SUFFIXES
            .iter()
            .filter_map(|suffix| {
                let name = format!("{pool}{suffix}");
                names().find(|b| *b == name)
            })
            .collect();
        match found.as_slice() {
            [] => Err(PoolError::Missing),
            [one] => Ok(one),
            many => Err(PoolError::Ambiguous(
                many.iter().map(|s| s.to_string()).collect(),
            )),
        }
    }

    /// The server rows of `pool` (resolved as in [`Stats::resolve`]).
    pub fn pool(&self, pool: &str) -> Result<Vec<&ServerStat>, PoolError> {
        let name = self.resolve(pool)?;
        Ok(self.servers.iter().filter(|s| s.backend == name).collect())
    }

    /// `pool` as hacore's observed load balancer state. Any server whose
    /// status cannot be mapped makes it an error: a guess could be UP.
    pub fn lb_state(&self, pool: &str) -> Result<LbState, PoolError> {
        let backends = self
            .pool(pool)?
            .into_iter()
            .map(|s| {
                s.to_backend().map_err(|reason| PoolError::Server {
                    server: s.server.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LbState { backends })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_map() {
        use ServerStatus::*;
        let cases: &[(&str, ServerStatus, Result<BackendStatus, ()>)] = &[
            ("UP", Up, Ok(BackendStatus::Up)),
            (
                "UP 1/3",
                GoingDown { health: 1, fall: 3 },
                Ok(BackendStatus::Down),
            ),
            ("DOWN", Down, Ok(BackendStatus::Down)),
            (
                "DOWN 1/2",
                GoingUp { health: 1, rise: 2 },
                Ok(BackendStatus::Down),
            ),
            ("NOLB", Nolb, Ok(BackendStatus::Nolb)),
            ("NOLB 1/2", Nolb, Ok(BackendStatus::Nolb)),
            ("DRAIN", Drain, Ok(BackendStatus::Drain)),
            ("DRAIN 2/3", Drain, Ok(BackendStatus::Drain)),
            ("DRAIN (agent)", Drain, Ok(BackendStatus::Drain)),
            ("MAINT", Maint, Ok(BackendStatus::Maint)),
            ("MAINT (via be/srv)", Maint, Ok(BackendStatus::Maint)),
            ("MAINT (resolution)", Maint, Ok(BackendStatus::Maint)),
            ("MAINT(via be/srv)", Maint, Ok(BackendStatus::Maint)),
            ("no check", NoCheck, Err(())),
        ];
        for (text, want, mapped) in cases {
            let got = ServerStatus::parse(text);
            assert_eq!(got, Some(*want), "{text}");
            assert_eq!(
                got.unwrap().backend_status().map_err(|_| ()),
                *mapped,
                "{text}"
            );
        }
        for bad in [
            "",
            "OPEN",
            "UPX",
            "UP sometimes",
            "DOWN x/y",
            "MAINTENANCE",
            "up",
            "?",
        ] {
            assert_eq!(ServerStatus::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn addresses_with_and_without_brackets() {
        assert_eq!(
            parse_address("10.0.20.11:6443"),
            Some("10.0.20.11:6443".parse().unwrap())
        );
        assert_eq!(
            parse_address("[::1]:6443"),
            Some("[::1]:6443".parse().unwrap())
        );
        assert_eq!(
            parse_address("::1:6443"),
            Some("[::1]:6443".parse().unwrap())
        );
        assert_eq!(parse_address("k8s-master:6443"), None);
        assert_eq!(parse_address(""), None);
    }

    #[test]
    fn columns_are_found_by_name_and_quoted_fields_keep_their_commas() {
        let text = "# svname,status,pxname,scur,check_desc\nm1,UP,pool,3,\"ok, fine\"\nBACKEND,UP,pool,3,\n\n";
        let s = Stats::parse(text).unwrap();
        assert_eq!(s.backends, ["pool"]);
        assert_eq!(s.servers.len(), 1);
        let m1 = &s.servers[0];
        assert_eq!(
            (m1.server.as_str(), m1.sessions, m1.address),
            ("m1", Some(3), None)
        );
        assert_eq!(m1.check_status, None);
    }

    #[test]
    fn not_csv_or_missing_columns_are_errors() {
        assert!(Stats::parse("").unwrap_err().contains("empty"));
        let e = Stats::parse("Permission denied\n\n").unwrap_err();
        assert!(e.contains("`Permission denied`"), "{e}");
        let e = Stats::parse("# pxname,svname,status\n").unwrap_err();
        assert!(e.contains("`scur`"), "{e}");
        let e = Stats::parse("# pxname,svname,scur,status\np,m1,many,UP\n").unwrap_err();
        assert!(e.contains("p/m1") && e.contains("many"), "{e}");
    }
}
