//! PyPI's `proxmoxer`, a real Proxmox client, drives the stand-in: list,
//! clone, configure, start, wait for a task, read errors. The venv lives in
//! the target directory (`proxmoxer-venv`; `scripts/test.sh` makes it, so
//! the test runs) and is made on first use otherwise; without Python 3 or
//! pip the test skips, saying why (a failure under `HACLI_REQUIRE_LABS=1`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use testlab::proxmox::{Inventory, ProxmoxLab};

const SCRIPT: &str = r#"
import json, os, urllib.parse
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

def api(secret):
    return ProxmoxAPI(os.environ["PVE_HOST"], port=int(os.environ["PVE_PORT"]),
                      user=os.environ["PVE_USER"], token_name=os.environ["PVE_TOKEN_NAME"],
                      token_value=secret, verify_ssl=os.environ["PVE_CA"], timeout=10)

px = api(os.environ["PVE_TOKEN_VALUE"])
out = {}
out["version"] = px.version.get()["version"]
vms = px.cluster.resources.get(type="vm")
out["vms"] = sorted(v["vmid"] for v in vms)
out["templates"] = [v["vmid"] for v in vms if v.get("template")]
out["nodes"] = sorted(n["node"] for n in px.nodes.get())
st = px.nodes("pve").status.get()
out["pve_mem"] = st["memory"]["total"]
out["pve_cpus"] = st["cpuinfo"]["cpus"]
out["on_pve"] = len(px.nodes("pve").qemu.get())

upid = px.nodes("pve").qemu(9000).clone.post(newid=230, name="px-clone", full=1)
out["upid_fields"] = len(upid.split(":"))
out["lock_while_cloning"] = px.nodes("pve").qemu(230).status.current.get().get("lock")
res = Tasks.blocking_status(px, upid, timeout=10, polling_interval=0.05)
out["clone_exit"] = res["exitstatus"]
out["lock_after"] = px.nodes("pve").qemu(230).status.current.get().get("lock")
px.nodes("pve").qemu(230).config.put(cores=2, memory=4096,
    ipconfig0="ip=198.18.20.130/24,gw=198.18.20.1",
    sshkeys=urllib.parse.quote("ssh-ed25519 AAAAC3+x/y= me@host", safe=""))
cfg = px.nodes("pve").qemu(230).config.get()
out["cores"] = cfg["cores"]
out["memory"] = cfg["memory"]
out["ipconfig0"] = cfg["ipconfig0"]
out["sshkeys"] = urllib.parse.unquote(cfg["sshkeys"])
upid = px.nodes("pve").qemu(230).status.start.post()
res = Tasks.blocking_status(px, upid, timeout=10, polling_interval=0.05)
out["start_exit"] = res["exitstatus"]
out["status"] = px.nodes("pve").qemu(230).status.current.get()["status"]

def err(f):
    try:
        f()
        return None
    except ResourceException as e:
        # proxmoxer: status_message is the standard name, content the reason phrase
        return {"code": e.status_code, "status": e.status_message, "reason": e.content, "errors": e.errors}

out["delete_running"] = err(lambda: px.nodes("pve").qemu(230).delete(purge=1))
out["bad_clone"] = err(lambda: px.nodes("pve").qemu(9000).clone.post(newid=99, name="bad_name", cores=2))
out["raw_sshkeys"] = err(lambda: px.nodes("pve").qemu(230).config.put(sshkeys="ssh-ed25519 AAAA me@host"))
out["taken_id"] = err(lambda: px.cluster.nextid.get(vmid=205))
try:
    api("wrong-secret").version.get()
    out["wrong_token"] = None
except Exception as e:
    out["wrong_token"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"#;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The venv's python with proxmoxer, or why not.
fn python() -> Result<PathBuf, String> {
    let venv = target_dir().join("proxmoxer-venv");
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import proxmoxer, requests"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&py) {
        return Ok(py);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !made.success() {
        return Err("python3 -m venv failed (Debian: install python3-venv)".into());
    }
    let pip = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "proxmoxer>=2.2,<3",
            "requests>=2.31",
        ])
        .status()
        .map_err(|e| format!("pip not runnable: {e}"))?;
    if !pip.success() || !ok(&py) {
        return Err("pip could not install proxmoxer and requests (no index reachable?)".into());
    }
    Ok(py)
}

#[test]
fn proxmoxer_drives_the_stand_in() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            testlab::skip::skip("proxmoxer_drives_the_stand_in", &why);
            return;
        }
    };
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let (user, token) = lab.token_id().split_once('!').unwrap();
    let out = Command::new(&py)
        .args(["-c", SCRIPT])
        .env("PVE_HOST", lab.addr().ip().to_string())
        .env("PVE_PORT", lab.addr().port().to_string())
        .env("PVE_USER", user)
        .env("PVE_TOKEN_NAME", token)
        .env("PVE_TOKEN_VALUE", lab.token_secret())
        .env("PVE_CA", lab.ca_path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "proxmoxer script failed:\n{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    println!("{v:#}");

    assert_eq!(v["version"], "9.0.11");
    assert!(v["vms"].as_array().unwrap().contains(&205.into()));
    assert_eq!(v["templates"], serde_json::json!([9000]));
    assert_eq!(v["nodes"], serde_json::json!(["pve", "pve2"]));
    assert_eq!(v["pve_mem"], 256u64 << 30);
    assert_eq!(v["pve_cpus"], 64);
    assert_eq!(v["on_pve"], 10);
    assert_eq!(v["upid_fields"], 9);
    assert_eq!(v["lock_while_cloning"], "clone");
    assert_eq!(v["clone_exit"], "OK");
    assert!(v["lock_after"].is_null());
    assert_eq!(v["cores"], 2);
    assert_eq!(v["memory"], "4096");
    assert_eq!(v["ipconfig0"], "ip=198.18.20.130/24,gw=198.18.20.1");
    assert_eq!(v["sshkeys"], "ssh-ed25519 AAAAC3+x/y= me@host");
    assert_eq!(v["start_exit"], "OK");
    assert_eq!(v["status"], "running");

    // Errors as proxmoxer reads them: the reason phrase, and the errors map.
    assert_eq!(v["delete_running"]["code"], 500);
    assert_eq!(
        v["delete_running"]["reason"],
        "VM 230 is running - destroy failed"
    );
    assert_eq!(v["bad_clone"]["code"], 400);
    assert_eq!(v["bad_clone"]["reason"], "Parameter verification failed.");
    let errors = &v["bad_clone"]["errors"];
    assert_eq!(errors["newid"], "value must have a minimum value of 100");
    assert!(
        errors["name"].as_str().unwrap().contains("DNS name"),
        "{errors}"
    );
    assert!(
        errors["cores"]
            .as_str()
            .unwrap()
            .contains("does not allow additional properties")
    );
    assert_eq!(v["raw_sshkeys"]["code"], 400);
    assert!(
        v["raw_sshkeys"]["errors"]["sshkeys"]
            .as_str()
            .unwrap()
            .contains("invalid urlencoded string"),
        "{}",
        v["raw_sshkeys"]
    );
    assert_eq!(v["taken_id"]["errors"]["vmid"], "VM 205 already exists");
    let wrong = v["wrong_token"].as_str().unwrap();
    assert!(wrong.contains("401"), "{wrong}");
    assert!(wrong.contains("invalid token value!"), "{wrong}");
}
