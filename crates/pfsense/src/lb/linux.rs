//! Plain HAProxy on a Linux host, over SSH.
//!
//! hacli owns one marked section of `haproxy.cfg`, between [`BEGIN`] and
//! [`END`], and never changes a line outside it. Each edit changes the
//! lines of one item (a `frontend` or `backend` block, or one `server`
//! line) and nothing else. The new file is written next to the old one,
//! checked with `haproxy -c`, and only then renamed over it (a backup is
//! kept as `haproxy.cfg.hacli-backup`) with the old file's owner and mode,
//! and HAProxy reloaded; the rename happens only if the file is still the
//! one that was read (its SHA-256, checked again after the validation), so
//! a concurrent edit is never lost. A reload that fails puts the previous
//! file back and the edit is reported not done. The VIP is an address of
//! the host's interface (`ip addr`).

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::LbError;
use super::model::{Bind, Edit, Frontend, LbConfig, Pool, Server, Vip};

/// First line of hacli's section.
pub const BEGIN: &str = "# BEGIN hacli managed section (hacli lb edits the lines up to END)";
/// Last line of hacli's section.
pub const END: &str = "# END hacli managed section";

/// Exit status of the swap script when the file changed since it was read.
const CHANGED: u32 = 75;
/// Exit status of the swap script when `haproxy -c` refused the new file.
const INVALID: u32 = 65;
/// Exit status of the swap script when the reload failed after the new
/// file was in place (the previous file is put back).
const RELOAD_FAILED: u32 = 76;
/// Exit status of the swap script when the new file cannot get the old
/// one's owner (nothing was written).
const NO_OWNER: u32 = 77;

/// Validate, swap and reload. The file is replaced only if it is still
/// the one read (its SHA-256), checked again after the validation, right
/// before the rename; the new file gets the old one's owner and mode; a
/// reload that fails puts the previous file back (if the file is still the
/// one written) and reloads it.
const SWAP: &str = r#"set -eu
cfg=$1; want=$2; reload=$3
digest() { sha256sum "$1" | cut -d' ' -f1; }
[ "$(digest "$cfg")" = "$want" ] || { echo "$cfg changed since it was read" >&2; exit 75; }
tmp=$(mktemp "$cfg.hacli.XXXXXX")
back="$cfg.hacli-restore"
trap 'rm -f "$tmp" "$back"' EXIT
cat > "$tmp"
if ! out=$(haproxy -c -f "$tmp" 2>&1); then printf '%s
' "$out" >&2; exit 65; fi
chown --reference="$cfg" "$tmp" 2>/dev/null || { echo "cannot give the new file the owner of $cfg ($(stat -c %U:%G "$cfg")): nothing was written" >&2; exit 77; }
chmod --reference="$cfg" "$tmp"
new=$(digest "$tmp")
cp -p "$cfg" "$cfg.hacli-backup"
[ "$(digest "$cfg.hacli-backup")" = "$want" ] || { echo "$cfg changed while the new file was validated: nothing was written" >&2; exit 75; }
mv -f "$tmp" "$cfg"
set +e
out=$(sh -c "$reload" 2>&1); rc=$?
set -e
if [ "$rc" -eq 0 ]; then exit 0; fi
echo "the reload (\`$reload\`) failed with exit $rc: $out" >&2
if [ "$(digest "$cfg")" != "$new" ]; then echo "$cfg changed after hacli wrote it: the previous file was NOT put back (it is $cfg.hacli-backup)" >&2; exit 76; fi
cp -p "$cfg.hacli-backup" "$back"
mv -f "$back" "$cfg"
if out=$(sh -c "$reload" 2>&1); then echo "the previous $cfg is back in place, and reloaded" >&2; else echo "the previous $cfg is back in place; reloading it failed too: $out" >&2; fi
exit 76
"#;

/// One `frontend`/`backend` block of the file.
#[derive(Debug, Clone)]
struct Block {
    kind: String,
    name: String,
    /// Line range `[start, end)` in the file.
    start: usize,
    end: usize,
    in_section: bool,
}

/// The file, split into lines and blocks.
#[derive(Debug, Clone)]
pub struct CfgFile {
    lines: Vec<String>,
    blocks: Vec<Block>,
    section: Option<(usize, usize)>,
}

fn is_header(l: &str) -> Option<(&str, &str)> {
    let mut w = l.split_whitespace();
    let kw = w.next()?;
    if !matches!(
        kw,
        "global"
            | "defaults"
            | "frontend"
            | "backend"
            | "listen"
            | "peers"
            | "resolvers"
            | "userlist"
            | "program"
            | "cache"
            | "http-errors"
            | "ring"
            | "mailers"
    ) || l.starts_with(char::is_whitespace)
    {
        return None;
    }
    Some((kw, w.next().unwrap_or("")))
}

impl CfgFile {
    /// Split `text` into blocks and find hacli's section.
    pub fn parse(text: &str) -> Result<CfgFile, String> {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let begin = lines.iter().position(|l| l.trim() == BEGIN);
        let end = lines.iter().position(|l| l.trim() == END);
        let section = match (begin, end) {
            (Some(b), Some(e)) if b < e => Some((b, e)),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "hacli's section is broken: `{BEGIN}` and `{END}` must both be there, in that order"
                ));
            }
        };
        let mut blocks: Vec<Block> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let boundary = l.trim() == BEGIN || l.trim() == END;
            if (boundary || is_header(l).is_some())
                && let Some(b) = blocks.last_mut()
                && b.end == usize::MAX
            {
                b.end = i;
            }
            if let Some((kw, name)) = is_header(l) {
                blocks.push(Block {
                    kind: kw.to_string(),
                    name: name.to_string(),
                    start: i,
                    end: usize::MAX,
                    in_section: section.is_some_and(|(b, e)| b < i && i < e),
                });
            }
        }
        if let Some(b) = blocks.last_mut()
            && b.end == usize::MAX
        {
            b.end = lines.len();
        }
        // A block does not own the blank lines that end it.
        for b in &mut blocks {
            while b.end > b.start + 1 && lines[b.end - 1].trim().is_empty() {
                b.end -= 1;
            }
        }
        Ok(CfgFile {
            lines,
            blocks,
            section,
        })
    }

    /// The text, with a final newline.
    pub fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    fn block(&self, kind: &str, name: &str) -> Option<&Block> {
        self.blocks
            .iter()
            .find(|b| b.kind == kind && b.name == name)
    }

    fn body(&self, b: &Block) -> impl Iterator<Item = &str> {
        self.lines[b.start + 1..b.end].iter().map(|l| l.trim())
    }

    /// Pools and frontends, in the shapes the other transports use.
    pub fn config(&self) -> LbConfig {
        let mut cfg = LbConfig::default();
        for b in &self.blocks {
            match b.kind.as_str() {
                "backend" | "listen" => {
                    let mut pool = Pool {
                        name: b.name.clone(),
                        check_type: "none".into(),
                        ..Pool::default()
                    };
                    for l in self.body(b) {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        match w.as_slice() {
                            ["option", "httpchk", _method, uri, ..] => {
                                pool.check_type = "HTTP".into();
                                pool.monitor_uri = uri.to_string();
                            }
                            ["default-server", rest @ ..] => {
                                if let Some(i) = rest.iter().position(|x| *x == "inter") {
                                    pool.checkinter = rest.get(i + 1).unwrap_or(&"").to_string();
                                }
                            }
                            ["server", name, addr, rest @ ..] => {
                                let (address, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
                                if rest.contains(&"check") && pool.check_type == "none" {
                                    pool.check_type = "Basic".into();
                                }
                                pool.servers.push(Server {
                                    name: name.to_string(),
                                    address: address.to_string(),
                                    port: port.to_string(),
                                    status: if rest.contains(&"disabled") {
                                        "disabled"
                                    } else {
                                        "active"
                                    }
                                    .into(),
                                    checkssl: if rest.contains(&"check-ssl") {
                                        "yes"
                                    } else {
                                        ""
                                    }
                                    .into(),
                                    advanced: advanced_of(rest),
                                });
                            }
                            _ => {}
                        }
                    }
                    cfg.pools.push(pool);
                }
                _ => {}
            }
            if matches!(b.kind.as_str(), "frontend" | "listen") {
                let mut f = Frontend {
                    name: b.name.clone(),
                    status: "active".into(),
                    kind: "tcp".into(),
                    ..Frontend::default()
                };
                for l in self.body(b) {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    match w.as_slice() {
                        ["bind", addr, ..] => {
                            let (a, p) = addr.rsplit_once(':').unwrap_or((addr, ""));
                            f.binds.push(Bind {
                                extaddr: "custom".into(),
                                extaddr_custom: a.trim_start_matches("ipv4@").to_string(),
                                extaddr_port: p.to_string(),
                            });
                        }
                        ["default_backend", pool] | ["use_backend", pool] => {
                            f.backend_serverpool = pool.to_string()
                        }
                        ["description", ..] => {
                            f.descr = l["description".len()..].trim().to_string()
                        }
                        ["mode", m] => f.kind = m.to_string(),
                        ["disabled"] => f.status = "disabled".into(),
                        _ => {}
                    }
                }
                if b.kind == "listen" {
                    f.backend_serverpool = b.name.clone();
                }
                cfg.frontends.push(f);
            }
        }
        cfg
    }

    fn ours(&self, kind: &str, name: &str) -> Result<Option<Block>, LbError> {
        match self.block(kind, name) {
            None => Ok(None),
            Some(b) if b.in_section => Ok(Some(b.clone())),
            Some(_) => Err(LbError::Refused(format!(
                "{kind} {name} is outside hacli's section of haproxy.cfg: it is not ours to change"
            ))),
        }
    }

    fn remove_block(&mut self, b: &Block) {
        let mut start = b.start;
        if start > 0 && self.lines[start - 1].trim().is_empty() {
            start -= 1;
        }
        self.lines.drain(start..b.end);
    }

    fn append_block(&mut self, block: Vec<String>) {
        if self.section.is_none() {
            if self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
                self.lines.push(String::new());
            }
            self.lines.push(BEGIN.into());
            self.lines.push(END.into());
        }
        let end = self
            .lines
            .iter()
            .position(|l| l.trim() == END)
            .unwrap_or(self.lines.len());
        let mut ins = Vec::new();
        if end > 0 && self.lines[end - 1].trim() != BEGIN && !self.lines[end - 1].trim().is_empty()
        {
            ins.push(String::new());
        }
        ins.extend(block);
        self.lines.splice(end..end, ins);
    }

    /// Apply one edit to the text. Ok(false): nothing to change.
    pub fn edit(&mut self, edit: &Edit) -> Result<bool, LbError> {
        match edit {
            Edit::AddPool { pool } => {
                let name = s(&pool["name"]);
                if self.block("backend", &name).is_some() {
                    return Err(LbError::Refused(format!("backend {name} already exists")));
                }
                self.append_block(render_pool(pool)?);
            }
            Edit::DeletePool { pool } => match self.ours("backend", pool)? {
                Some(b) => self.remove_block(&b),
                None => return Ok(false),
            },
            Edit::AddServer { pool, server } => {
                let Some(b) = self.ours("backend", pool)? else {
                    return Err(LbError::Refused(format!(
                        "no backend {pool} in hacli's section"
                    )));
                };
                let name = s(&server["name"]);
                if self.body(&b).any(|l| {
                    l.split_whitespace().nth(1) == Some(name.as_str()) && l.starts_with("server ")
                }) {
                    return Err(LbError::Refused(format!(
                        "backend {pool} already has a server {name}"
                    )));
                }
                let check = self
                    .body(&b)
                    .any(|l| l.starts_with("option httpchk") || l.starts_with("default-server"));
                let at = (b.start + 1..b.end)
                    .rev()
                    .find(|&i| self.lines[i].trim().starts_with("server "))
                    .map_or(b.end, |i| i + 1);
                self.lines.insert(at, render_server(server, check));
            }
            Edit::RemoveServer { pool, server } => {
                let Some(b) = self.ours("backend", pool)? else {
                    return Ok(false);
                };
                let Some(i) = (b.start + 1..b.end).find(|&i| {
                    let l = self.lines[i].trim();
                    l.starts_with("server ") && l.split_whitespace().nth(1) == Some(server.as_str())
                }) else {
                    return Ok(false);
                };
                self.lines.remove(i);
            }
            Edit::AddFrontend { frontend } => {
                let name = s(&frontend["name"]);
                if self.block("frontend", &name).is_some() {
                    return Err(LbError::Refused(format!("frontend {name} already exists")));
                }
                self.append_block(render_frontend(frontend));
            }
            Edit::DeleteFrontend { frontend } => match self.ours("frontend", frontend)? {
                Some(b) => self.remove_block(&b),
                None => return Ok(false),
            },
            Edit::AddVip { .. }
            | Edit::DeleteVip { .. }
            | Edit::AddHost { .. }
            | Edit::DeleteHost { .. } => {
                return Err(LbError::Refused(format!(
                    "{}: not a haproxy.cfg edit",
                    edit.describe()
                )));
            }
        }
        *self = CfgFile::parse(&self.text()).map_err(LbError::Refused)?;
        Ok(true)
    }
}

/// A server line's options less those [`render_server`] writes itself
/// (`check`, `check-ssl`, `verify none`, `disabled`): what a reader of the
/// pool copies to a new server as its `advanced` options.
fn advanced_of(rest: &[&str]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "check" | "check-ssl" | "disabled" => {}
            "verify" if rest.get(i + 1) == Some(&"none") => i += 1,
            other => out.push(other),
        }
        i += 1;
    }
    out.join(" ")
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn render_server(server: &Value, check: bool) -> String {
    let mut l = format!(
        "    server {} {}:{}",
        s(&server["name"]),
        s(&server["address"]),
        s(&server["port"])
    );
    if check {
        l.push_str(" check");
        if server["checkssl"] == "yes" {
            l.push_str(" check-ssl verify none");
        }
    }
    let adv = s(&server["advanced"]);
    if !adv.is_empty() {
        l.push(' ');
        l.push_str(&adv);
    }
    if server["status"] == "disabled" {
        l.push_str(" disabled");
    }
    l
}

/// A pool's `advanced_backend` (base64, as pfSense stores it), decoded
/// into its non-empty lines.
fn advanced_backend(v: &Value) -> Result<Vec<String>, LbError> {
    let Some(text) = v.as_str().filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| {
            LbError::Refused(format!(
                "the pool's advanced_backend is not base64 (as pfSense stores it): {e}"
            ))
        })?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn render_pool(pool: &Value) -> Result<Vec<String>, LbError> {
    let mut b = vec![
        format!("backend {}", s(&pool["name"])),
        "    mode tcp".into(),
        "    balance roundrobin".into(),
    ];
    // As pfSense's package writes them: the pool's connect timeout and
    // retries, its check, then the decoded `advanced_backend` lines.
    let timeout = s(&pool["connection_timeout"]);
    if !timeout.is_empty() {
        b.push(format!("    timeout connect {timeout}"));
    }
    let retries = s(&pool["retries"]);
    if !retries.is_empty() {
        b.push(format!("    retries {retries}"));
    }
    let check = pool["check_type"] != "none";
    if pool["check_type"] == "HTTP" {
        b.push(format!(
            "    option httpchk {} {} {}",
            s(&pool["httpcheck_method"]),
            s(&pool["monitor_uri"]),
            s(&pool["monitor_httpversion"])
        ));
    }
    b.extend(
        advanced_backend(&pool["advanced_backend"])?
            .into_iter()
            .map(|l| format!("    {l}")),
    );
    if check {
        b.push(format!(
            "    default-server inter {}",
            s(&pool["checkinter"])
        ));
    }
    if let Some(items) = pool["ha_servers"]["item"].as_array() {
        b.extend(items.iter().map(|i| render_server(i, check)));
    }
    Ok(b)
}

fn render_frontend(f: &Value) -> Vec<String> {
    let mut b = vec![format!("frontend {}", s(&f["name"]))];
    b.push(format!("    description {}", s(&f["descr"])));
    for a in f["a_extaddr"]["item"].as_array().into_iter().flatten() {
        b.push(format!(
            "    bind {}:{}",
            s(&a["extaddr_custom"]),
            s(&a["extaddr_port"])
        ));
    }
    b.push(format!("    mode {}", s(&f["type"])));
    b.push("    option tcplog".into());
    b.push(format!(
        "    default_backend {}",
        s(&f["backend_serverpool"])
    ));
    b
}

/// The address label that marks a VIP hacli added on `iface`.
pub fn vip_label(iface: &str) -> String {
    format!("{iface}:hacli")
}

/// Parse `ip -o addr show` into virtual IPs (every address of the host);
/// one labelled [`vip_label`] is described as hacli's.
pub fn addresses(ip_o_addr: &str) -> Vec<Vip> {
    ip_o_addr
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let iface = w.get(1)?.trim_end_matches(':');
            let i = w.iter().position(|x| *x == "inet" || *x == "inet6")?;
            let (addr, bits) = w.get(i + 1)?.split_once('/')?;
            Some(Vip {
                mode: "ipalias".into(),
                interface: iface.to_string(),
                subnet: addr.to_string(),
                subnet_bits: bits.to_string(),
                // `ip -o` ends a line's first part with a backslash,
                // straight after the label.
                descr: if w
                    .iter()
                    .any(|t| t.trim_end_matches('\\') == vip_label(iface))
                {
                    format!("label {} ({})", vip_label(iface), super::model::OURS)
                } else {
                    String::new()
                },
            })
        })
        .collect()
}

/// HAProxy's configuration file on a Linux host.
pub struct LinuxHaproxy {
    config: ssh::Config,
    session: OnceCell<ssh::Session>,
    path: String,
    reload: String,
}

impl std::fmt::Debug for LinuxHaproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxHaproxy")
            .field("host", &self.config.target.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LinuxHaproxy {
    /// `path`: the configuration file; `reload`: the command run after a
    /// validated change.
    pub fn new(config: ssh::Config, path: String, reload: String) -> LinuxHaproxy {
        LinuxHaproxy {
            config,
            session: OnceCell::new(),
            path,
            reload,
        }
    }

    /// The host, for messages.
    pub fn target_name(&self) -> &str {
        &self.config.target.name
    }

    async fn run(&self, cmd: ssh::Cmd, until: Instant) -> Result<ssh::Output, LbError> {
        let session = self
            .session
            .get_or_try_init(|| ssh::Session::connect(&self.config))
            .await
            .map_err(LbError::ssh)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LbError::Timeout {
                what: format!("{}: {cmd}", self.target_name()),
                deadline: Duration::ZERO,
            });
        }
        session.run(&cmd, left).await.map_err(LbError::ssh)
    }

    async fn file(&self, until: Instant) -> Result<(String, CfgFile), LbError> {
        let cmd = ssh::Cmd::new("cat").arg(&self.path).max_output(16 << 20);
        let out = self
            .run(cmd.clone(), until)
            .await?
            .check(&cmd, &self.config.target)
            .map_err(LbError::ssh)?;
        let text = String::from_utf8(out.stdout).map_err(|_| LbError::Protocol {
            what: format!("{}:{}", self.target_name(), self.path),
            detail: "not UTF-8".into(),
        })?;
        let file = CfgFile::parse(&text)
            .map_err(|e| LbError::Refused(format!("{}:{}: {e}", self.target_name(), self.path)))?;
        Ok((text, file))
    }

    /// Pools and frontends of the whole file, and the host's addresses.
    pub async fn read(&self, until: Instant) -> Result<LbConfig, LbError> {
        let (_, file) = self.file(until).await?;
        let mut cfg = file.config();
        let cmd = ssh::Cmd::new("ip").args(["-o", "addr", "show"]);
        let out = self
            .run(cmd.clone(), until)
            .await?
            .check(&cmd, &self.config.target)
            .map_err(LbError::ssh)?;
        cfg.vips = addresses(&String::from_utf8_lossy(&out.stdout));
        Ok(cfg)
    }

    /// A VIP added, on the named interface or the one that routes to its
    /// network, labelled with hacli's mark where the label fits.
    async fn add_vip(&self, vip: &Value, until: Instant) -> Result<bool, LbError> {
        let mut iface = s(&vip["interface"]);
        let addr = s(&vip["subnet"]);
        let probe = ssh::Cmd::new("ip").args(["link", "show", "dev", &iface]);
        if !self.run(probe, until).await?.success() {
            // pfSense names (`lan`) mean nothing here: use the
            // interface that routes to the VIP's network.
            let route = ssh::Cmd::new("ip").args(["-o", "route", "get", &addr]);
            let out = self
                .run(route.clone(), until)
                .await?
                .check(&route, &self.config.target)
                .map_err(LbError::ssh)?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let w: Vec<&str> = text.split_whitespace().collect();
            iface = w
                .iter()
                .position(|x| *x == "dev")
                .and_then(|i| w.get(i + 1))
                .map(|x| x.to_string())
                .ok_or_else(|| {
                    LbError::Refused(format!(
                        "{}: no interface routes to {addr}: set loadBalancer.manage.vipInterface",
                        self.target_name()
                    ))
                })?;
        }
        let mut cmd = ssh::Cmd::new("ip").args([
            "addr",
            "add",
            &format!("{addr}/{}", s(&vip["subnet_bits"])),
            "dev",
            &iface,
        ]);
        // hacli's mark: the address label `IFACE:hacli` (IPv4 only;
        // at most 15 characters), so only this VIP is ever deleted.
        let label = vip_label(&iface);
        if addr.parse::<std::net::Ipv4Addr>().is_ok() && label.len() <= 15 {
            cmd = cmd.args(["label", label.as_str()]);
        }
        self.run(cmd.clone(), until)
            .await?
            .check(&cmd, &self.config.target)
            .map_err(LbError::ssh)?;
        Ok(true)
    }

    /// Carry one edit out. Ok(false) when nothing changed.
    pub async fn edit(&self, edit: &Edit, until: Instant) -> Result<bool, LbError> {
        match edit {
            Edit::AddVip { vip } => self.add_vip(vip, until).await,
            Edit::DeleteVip { address } => {
                let cfg = self.read(until).await?;
                let Some(v) = cfg.vips.iter().find(|v| &v.subnet == address) else {
                    return Ok(false);
                };
                let cmd = ssh::Cmd::new("ip").args([
                    "addr",
                    "del",
                    &format!("{}/{}", v.subnet, v.subnet_bits),
                    "dev",
                    &v.interface,
                ]);
                self.run(cmd.clone(), until)
                    .await?
                    .check(&cmd, &self.config.target)
                    .map_err(LbError::ssh)?;
                Ok(true)
            }
            Edit::AddHost { .. } | Edit::DeleteHost { .. } => Err(LbError::Refused(
                "plain HAProxy has no DNS resolver: create the API name's record in your DNS"
                    .into(),
            )),
            _ => {
                let (text, mut file) = self.file(until).await?;
                if !file.edit(edit)? {
                    return Ok(false);
                }
                let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                let want: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                let cmd = ssh::Cmd::new("sh")
                    .args(["-c", SWAP, "hacli-swap", &self.path, &want, &self.reload])
                    .stdin(file.text().into_bytes());
                let out = self.run(cmd.clone(), until).await?;
                match out.status {
                    ssh::ExitStatus::Code(0) => Ok(true),
                    ssh::ExitStatus::Code(INVALID) => Err(LbError::Invalid {
                        what: format!("{}:{}", self.target_name(), self.path),
                        messages: format!(
                            "haproxy -c refused the new file, nothing was written: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    }),
                    ssh::ExitStatus::Code(CHANGED) => Err(LbError::Busy {
                        what: format!("{}:{}", self.target_name(), self.path),
                        message: format!(
                            "the file changed while hacli edited it, nothing was written: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    }),
                    ssh::ExitStatus::Code(RELOAD_FAILED) => Err(LbError::Refused(format!(
                        "{}:{}: not done: {}",
                        self.target_name(),
                        self.path,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))),
                    ssh::ExitStatus::Code(NO_OWNER) => Err(LbError::Refused(format!(
                        "{}:{}: not done: {}",
                        self.target_name(),
                        self.path,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))),
                    _ => out
                        .check(&cmd, &self.config.target)
                        .map(|_| true)
                        .map_err(LbError::ssh),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_server_does_not_repeat_its_siblings_check_options() {
        assert_eq!(
            advanced_of(&[
                "check",
                "check-ssl",
                "verify",
                "none",
                "fall",
                "3",
                "rise",
                "2"
            ]),
            "fall 3 rise 2"
        );
        assert_eq!(advanced_of(&["send-proxy-v2", "disabled"]), "send-proxy-v2");
        assert_eq!(
            advanced_of(&["verify", "required", "ca-file", "/x"]),
            "verify required ca-file /x"
        );
    }
    use crate::lb::model::OURS;
    use serde_json::json;

    const CFG: &str = "global\n    daemon\n\nfrontend mail\n    bind 198.18.0.2:25\n    default_backend mx\n\nbackend mx\n    server mx1 198.18.0.20:25 send-proxy-v2\n";

    #[test]
    fn edits_touch_only_their_lines_inside_the_section() {
        let mut f = CfgFile::parse(CFG).unwrap();
        let pool = json!({"name": "api", "check_type": "HTTP", "httpcheck_method": "GET", "monitor_uri": "/readyz",
            "monitor_httpversion": "HTTP/1.0", "checkinter": "2000",
            "ha_servers": {"item": [{"name": "m1", "address": "198.18.0.10", "port": "6443", "checkssl": "yes", "advanced": "fall 3 rise 2"}]}});
        assert!(f.edit(&Edit::AddPool { pool }).unwrap());
        let fe = json!({"name": "api", "descr": format!("API ({OURS})"), "type": "tcp", "backend_serverpool": "api",
            "a_extaddr": {"item": [{"extaddr": "custom", "extaddr_custom": "198.18.0.99", "extaddr_port": "6443"}]}});
        assert!(f.edit(&Edit::AddFrontend { frontend: fe }).unwrap());
        let text = f.text();
        assert!(
            text.starts_with(CFG),
            "lines outside the section changed:\n{text}"
        );
        let before = text.clone();
        let server = json!({"name": "m2", "address": "198.18.0.11", "port": "6443", "checkssl": "yes", "advanced": "fall 3 rise 2"});
        assert!(
            f.edit(&Edit::AddServer {
                pool: "api".into(),
                server
            })
            .unwrap()
        );
        let after = f.text();
        let added: Vec<&str> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .collect();
        assert_eq!(
            added,
            ["    server m2 198.18.0.11:6443 check check-ssl verify none fall 3 rise 2"]
        );
        let cfg = f.config();
        let api = cfg.pool("api").unwrap();
        assert_eq!(api.servers.len(), 2);
        assert_eq!(api.monitor_uri, "/readyz");
        assert!(
            cfg.frontend_on("198.18.0.99:6443".parse().unwrap())
                .unwrap()
                .is_ours()
        );
        assert!(
            f.edit(&Edit::RemoveServer {
                pool: "api".into(),
                server: "m2".into()
            })
            .unwrap()
        );
        assert_eq!(f.text(), before);
        assert!(
            !f.edit(&Edit::RemoveServer {
                pool: "api".into(),
                server: "m2".into()
            })
            .unwrap()
        );
        assert!(
            f.edit(&Edit::DeleteFrontend {
                frontend: "api".into()
            })
            .unwrap()
        );
        assert!(f.edit(&Edit::DeletePool { pool: "api".into() }).unwrap());
        assert_eq!(f.text(), format!("{CFG}\n{BEGIN}\n{END}\n"));
    }

    #[test]
    fn the_apiserver_pool_renders_retries_and_advanced_backend_like_pfsense() {
        use crate::lb::model::edit_for;
        use hacore::backend::LbOp;
        use hacore::topology::{CheckKind, HealthCheck};
        let op = LbOp::CreatePool {
            pool: "api".into(),
            check: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: "2s".parse().unwrap(),
            fall: 3,
            rise: 2,
            servers: vec![("m1".into(), "198.18.0.10:6443".parse().unwrap())],
        };
        let hc = HealthCheck {
            connect_timeout: Some("1500ms".parse().unwrap()),
            ..HealthCheck::default()
        };
        let edit = edit_for(&op, &LbConfig::default(), &hc).unwrap().unwrap();
        let mut f = CfgFile::parse(CFG).unwrap();
        assert!(f.edit(&edit).unwrap());
        let text = f.text();
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "backend api")
            .take_while(|l| !l.is_empty() && *l != END)
            .collect();
        assert_eq!(
            block,
            [
                "backend api",
                "    mode tcp",
                "    balance roundrobin",
                "    timeout connect 1500",
                "    retries 3",
                "    option httpchk GET /readyz HTTP/1.0",
                "    option redispatch 1",
                "    timeout check 2000",
                "    default-server inter 2000",
                "    server m1 198.18.0.10:6443 check check-ssl verify none fall 3 rise 2 fastinter 1000",
            ]
        );
        // Not base64: refused, nothing written.
        let mut f = CfgFile::parse(CFG).unwrap();
        let bad = json!({"name": "x", "check_type": "none", "advanced_backend": "not base64!"});
        let e = f.edit(&Edit::AddPool { pool: bad }).unwrap_err();
        assert!(e.to_string().contains("advanced_backend"), "{e}");
        assert_eq!(f.text(), CFG);
    }

    #[test]
    fn blocks_outside_the_section_are_refused() {
        let mut f = CfgFile::parse(CFG).unwrap();
        let e = f.edit(&Edit::DeletePool { pool: "mx".into() }).unwrap_err();
        assert!(e.to_string().contains("outside hacli's section"), "{e}");
        let e = f
            .edit(&Edit::RemoveServer {
                pool: "mx".into(),
                server: "mx1".into(),
            })
            .unwrap_err();
        assert!(e.to_string().contains("not ours"), "{e}");
        assert!(CfgFile::parse(&format!("{CFG}{END}\n")).is_err());
    }

    #[test]
    fn ip_addr_output() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n2: eth0    inet 198.18.0.2/24 brd 198.18.0.255 scope global eth0\n2: eth0    inet 198.18.0.99/24 scope global secondary eth0:hacli\\       valid_lft forever preferred_lft forever\n";
        let v = addresses(out);
        // The address hacli added carries its label: it is ours; the
        // host's own address is not.
        assert!(v[1].descr.is_empty());
        assert_eq!(v[2].subnet, "198.18.0.99");
        assert!(v[2].descr.contains(super::super::model::OURS), "{:?}", v[2]);
        assert_eq!(v[1].interface, "eth0");
        assert_eq!(
            (v[1].subnet.as_str(), v[1].subnet_bits.as_str()),
            ("198.18.0.2", "24")
        );
    }
}
