//! The plugin's settings as a call: what to run, with what, and the
//! `hacli` command line it stands for (secrets shown by their setting's
//! name), which `hacli` itself must accept.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use hacore::Action;

use super::settings::{
    CHECK, DISRUPT, GATE, PLAN, RELEASE, ROLL, SIMULATE, Settings, ci_identity, is_inline, name,
};

/// The command line the settings stand for, and its printable form
/// (secret values replaced by their setting's name).
#[derive(Debug)]
pub(crate) struct Mapped {
    pub argv: Vec<OsString>,
    pub shown: Vec<String>,
}

impl Mapped {
    pub(crate) fn new(words: &[&str]) -> Mapped {
        let mut m = Mapped {
            argv: vec!["hacli".into()],
            shown: vec!["hacli".into()],
        };
        for w in words {
            m.arg(w);
        }
        m
    }

    pub(crate) fn arg(&mut self, v: impl AsRef<std::ffi::OsStr>) {
        self.argv.push(v.as_ref().to_owned());
        self.shown.push(v.as_ref().to_string_lossy().into_owned());
    }

    pub(crate) fn opt(&mut self, flag: &str, v: Option<impl AsRef<std::ffi::OsStr>>) {
        if let Some(v) = v {
            self.arg(flag);
            self.arg(v);
        }
    }

    fn secret(&mut self, flag: &str, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.argv.push(flag.into());
            self.argv.push(v.into());
            self.shown.push(flag.into());
            self.shown.push(format!("<settings.{key}>"));
        }
    }
}

/// The target of a gate or a check.
#[derive(Debug)]
pub(crate) struct Target {
    pub action: Action,
    pub node: String,
    pub topology: PathBuf,
    /// A built-in policy name or a policy file.
    pub policy: Option<String>,
}

/// What the settings ask to run.
#[derive(Debug)]
pub(crate) enum Call {
    /// The live gate.
    Gate {
        target: Target,
        reach: Box<haops::Reach>,
        lock: bool,
        lock_ttl: Duration,
        identity: Option<String>,
    },
    /// The offline check.
    Check {
        target: Target,
        state: PathBuf,
        at: Option<String>,
        requester: Option<String>,
    },
    /// The offline plan.
    Plan {
        from: PathBuf,
        to: PathBuf,
        state: Option<PathBuf>,
        template: Option<u32>,
    },
    /// The simulation of a plan.
    Simulate { plan: PathBuf, failures: usize },
    /// Release the lock.
    Release {
        reach: Box<haops::Reach>,
        identity: String,
    },
    /// `disrupt` and `roll`: the command line itself, run as hacli runs it.
    Command { argv: Vec<OsString> },
}

/// Map the settings onto a call and its hacli command line.
pub(crate) fn map(st: &Settings, tmp: &Path) -> anyhow::Result<(Mapped, Call)> {
    match st.command {
        GATE | CHECK => {
            let (mut m, target) = target(st, tmp)?;
            if st.command == CHECK {
                let state = st.file("state", st.required("state")?, tmp)?;
                m.opt("--state", Some(&state));
                let at = st.get("at").map(str::to_string);
                if let Some(at) = &at {
                    crate::offline::parse_at(Some(at)).with_context(|| name("at"))?;
                    m.opt("--at", Some(at));
                }
                let requester = st.get("identity").map(str::to_string);
                m.opt("--requester", requester.as_ref());
                let call = Call::Check {
                    target,
                    state,
                    at,
                    requester,
                };
                return Ok((m, call));
            }
            let reach = live(st, tmp, &mut m)?;
            let lock = st.boolean("lock")?;
            if lock {
                m.arg("--lock");
            }
            let ttl = st.duration("lock_ttl")?;
            m.opt("--lock-ttl", ttl.as_ref().map(|t| &t.0));
            let identity = st.get("identity").map(str::to_string).or_else(ci_identity);
            m.opt("--identity", identity.as_ref());
            let call = Call::Gate {
                target,
                reach: Box::new(reach),
                lock,
                lock_ttl: ttl.map_or(Duration::from_secs(1800), |t| t.1),
                identity,
            };
            Ok((m, call))
        }
        PLAN => plan(st, tmp),
        SIMULATE => {
            let plan = st.file("plan", st.required("plan")?, tmp)?;
            let mut m = Mapped::new(&[SIMULATE]);
            m.arg(&plan);
            let mut failures = 1;
            if let Some(k) = st.get("failures") {
                failures = k
                    .parse::<usize>()
                    .map_err(|_| anyhow!("{}: `{k}` is not a number", name("failures")))?;
                m.opt("--failures", Some(k));
            }
            Ok((m, Call::Simulate { plan, failures }))
        }
        RELEASE => release(st, tmp),
        DISRUPT | ROLL => super::disrupt::map(st, tmp),
        other => unreachable!("{other}"),
    }
}

/// The action, node, topology and policy of a gate or a check.
fn target(st: &Settings, tmp: &Path) -> anyhow::Result<(Mapped, Target)> {
    let action = st.required("action")?;
    let parsed = action.parse::<Action>().with_context(|| name("action"))?;
    let node = st.required("node")?;
    let topology = st.file("topology", st.required("topology")?, tmp)?;
    let mut m = Mapped::new(&[st.command, action, node]);
    m.opt("--topology", Some(&topology));
    let mut policy = None;
    if let Some(p) = st.get("policy") {
        let spec: OsString = if is_inline(p) {
            st.file("policy", p, tmp)?.into()
        } else if st.in_workspace(p).is_file() {
            st.in_workspace(p).into()
        } else {
            p.into()
        };
        let spec = spec.to_string_lossy().into_owned();
        hacore::Policy::named_or_file(&spec).with_context(|| name("policy"))?;
        m.opt("--policy", Some(&spec));
        policy = Some(spec);
    }
    let target = Target {
        action: parsed,
        node: node.to_string(),
        topology,
        policy,
    };
    Ok((m, target))
}

/// How the live gate (and `disrupt`, `roll`) reaches the cluster: the
/// settings, then the environment (as the CLI's flags do).
pub(crate) fn live(st: &Settings, tmp: &Path, m: &mut Mapped) -> anyhow::Result<haops::Reach> {
    let mut r = haops::Reach {
        kubeconfig: st.secret_file("kubeconfig", tmp, false)?,
        ..haops::Reach::default()
    };
    m.opt("--kubeconfig", r.kubeconfig.as_ref());
    if let Some(e) = st.list("etcd_endpoints")? {
        r.etcd_endpoints = e.split(',').map(str::to_string).collect();
        m.opt("--etcd-endpoints", Some(e));
    }
    r.etcd_tls.ca = st.secret_file("etcd_ca", tmp, true)?;
    m.opt("--etcd-cacert", r.etcd_tls.ca.as_ref());
    r.etcd_tls.cert = st.secret_file("etcd_cert", tmp, true)?;
    m.opt("--etcd-cert", r.etcd_tls.cert.as_ref());
    r.etcd_tls.key = st.secret_file("etcd_key", tmp, true)?;
    m.opt("--etcd-key", r.etcd_tls.key.as_ref());
    if let Some((text, d)) = st.duration("deadline")? {
        r.deadline = d;
        m.opt("--deadline", Some(text));
    }
    if let Some((text, d)) = st.duration("member_timeout")? {
        r.member_timeout = d;
        m.opt("--member-timeout", Some(text));
    }
    if let Some(k) = st.get("kill_switch") {
        r.kill_switch = k.to_string();
        m.opt("--kill-switch", Some(k));
    }
    if let Some(l) = st.get("lock_lease") {
        r.lock_lease = l.to_string();
        m.opt("--lock-lease", Some(l));
    }
    if let Some(d) = st.list("daemonsets")? {
        r.daemonsets = d.split(',').map(str::to_string).collect();
        m.opt("--daemonsets", Some(d));
    }
    r.prometheus_url = st.get("prometheus_url").map(str::to_string);
    m.secret(
        "--prometheus-url",
        "prometheus_url",
        st.get("prometheus_url"),
    );
    r.prometheus = st.get("prometheus").map(str::to_string);
    m.secret("--prometheus", "prometheus", st.get("prometheus"));
    if let Some(rt) = st.get("lb_runtime_api") {
        r.lb_runtime_api = Some(
            rt.parse()
                .map_err(|e| anyhow!("{}: {e}", name("lb_runtime_api")))?,
        );
        m.opt("--lb-runtime-api", Some(rt));
    }
    if let Some(p) = st.get("apiserver_port") {
        r.apiserver_port = Some(
            p.parse::<u16>()
                .map_err(|_| anyhow!("{}: `{p}` is not a port number", name("apiserver_port")))?,
        );
        m.opt("--apiserver-port", Some(p));
    }
    Ok(r.with_env(|k| std::env::var(k).ok())?)
}

fn plan(st: &Settings, tmp: &Path) -> anyhow::Result<(Mapped, Call)> {
    let from = st.file("from", st.required("from")?, tmp)?;
    let to = st.file("to", st.required("to")?, tmp)?;
    let mut m = Mapped::new(&[PLAN]);
    m.opt("--from", Some(&from));
    m.opt("--to", Some(&to));
    let state = match st.get("state") {
        Some(s) => Some(st.file("state", s, tmp)?),
        None => None,
    };
    m.opt("--state", state.as_ref());
    let mut template = None;
    if let Some(t) = st.get("template") {
        template = Some(
            t.parse::<u32>()
                .map_err(|_| anyhow!("{}: `{t}` is not a VM id", name("template")))?,
        );
        m.opt("--template", Some(t));
    }
    let call = Call::Plan {
        from,
        to,
        state,
        template,
    };
    Ok((m, call))
}

fn release(st: &Settings, tmp: &Path) -> anyhow::Result<(Mapped, Call)> {
    let identity = match st.get("identity") {
        Some(i) => i.to_string(),
        None => ci_identity().ok_or_else(|| {
            anyhow!(
                "{} is missing, and CI_REPO / CI_PIPELINE_NUMBER are not set to derive it",
                name("identity")
            )
        })?,
    };
    let mut m = Mapped::new(&["lock", "release", "--identity", &identity]);
    let mut reach = haops::Reach {
        kubeconfig: st.secret_file("kubeconfig", tmp, false)?,
        ..haops::Reach::default()
    };
    m.opt("--kubeconfig", reach.kubeconfig.as_ref());
    if let Some(l) = st.get("lock_lease") {
        reach.lock_lease = l.to_string();
        m.opt("--lock-lease", Some(l));
    }
    let reach = reach.with_env(|k| std::env::var(k).ok())?;
    let call = Call::Release {
        reach: Box::new(reach),
        identity,
    };
    Ok((m, call))
}
