"""hapy.disrupt and hapy.roll: planned disruptions rehearsed on the
simulated backend, and the upgrade-chain example that uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hapy
from conftest import EXAMPLES, HA, Cli

ROLL = EXAMPLES / "python" / "upgrade_chain_roll.py"


def test_disrupt_reboots_the_leader_and_reports_done(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    r = hapy.disrupt(
        "reboot", "k8s-master", HA, journal=tmp_path / "j.jsonl", sim_state=state, policy="drain"
    )
    assert r["result"] == "ran", r
    assert r["outcome"] == {"outcome": "completed"}
    assert r["lockReleased"] is True
    sim = json.loads(state.read_text())
    assert sim["reboots"] == {"k8s-master": 1}
    assert sim["leader_moves"] == [["k8s-master", "k8s-master-2"]]


def test_disrupt_failure_names_the_step_and_restores(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    r = hapy.disrupt(
        "run",
        "k8s-master-3",
        HA,
        command=["apt-get", "-y", "upgrade"],
        journal=tmp_path / "j.jsonl",
        sim_state=state,
        policy="drain",
        fail=["run-command/k8s-master-3"],
    )
    assert r["outcome"]["outcome"] == "rolled-back", r
    assert r["outcome"]["step"] == "run/k8s-master-3/run"
    sim = json.loads(state.read_text())
    assert sim["server_state"]["k8s-master-3"] == "ready"
    assert sim["cordoned"] == []
    assert sim["lock_holder"] is None


def test_bad_input_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(hapy.ConfigError, match="version"):
        hapy.disrupt("upgrade", "k8s-master", HA, journal=tmp_path / "j", sim_state=tmp_path / "s")
    with pytest.raises(hapy.ConfigError, match="simulated backend only"):
        hapy.disrupt("reboot", "k8s-master", HA, journal=tmp_path / "j", backend="live", fail=["reboot/k8s-master"])
    with pytest.raises(hapy.ConfigError, match="sim_state"):
        hapy.disrupt("reboot", "k8s-master", HA, journal=tmp_path / "j")
    with pytest.raises(hapy.ConfigError, match="simulated"):
        hapy.roll("reboot", HA, journal_dir=tmp_path, backend="vmware")
    with pytest.raises(hapy.ConfigError, match="sim_state"):
        hapy.roll("reboot", HA, journal_dir=tmp_path)
    with pytest.raises(hapy.ConfigError, match="simulated backend only"):
        hapy.roll("reboot", HA, journal_dir=tmp_path, backend="live", fail=["reboot/k8s-master"])


def test_roll_stops_at_the_second_master_and_the_example_resumes(tmp_path: Path) -> None:
    jd = tmp_path / "roll"
    args = [sys.executable, str(ROLL), "-t", str(HA), "--to", "v1.33.2", "--journal-dir", str(jd)]
    args += ["--soak", "60", "--policy", "drain", "--nodes", "k8s-master,k8s-master-2,k8s-master-3,k8s-node1"]
    p = subprocess.run([*args, "--fail", "upgrade/k8s-master-2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "k8s-master: done" in p.stdout
    assert "k8s-master-2: FAILED at step upgrade/k8s-master-2/upgrade" in p.stdout
    assert "not started: k8s-master-3, k8s-node1" in p.stdout
    p = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    sim = json.loads((jd / "sim.json").read_text())
    assert sim["upgraded_to"] == {
        n: "v1.33.2" for n in ["k8s-master", "k8s-master-2", "k8s-master-3", "k8s-node1"]
    }


def test_disrupt_reports_what_the_cli_reports(tmp_path: Path, cli: Cli) -> None:
    """Same names, same semantics: hapy.disrupt and `hacli disrupt` are one
    function of haops; on fresh simulated clusters they report the same."""
    r = hapy.disrupt(
        "reboot", "k8s-master-2", HA, journal=tmp_path / "py.jsonl", sim_state=tmp_path / "py.sim.json", policy="drain"
    )
    out, _, code = cli.json(
        "disrupt", "reboot", "k8s-master-2", "-t", HA, "--journal", tmp_path / "cli.jsonl",
        "--backend", "simulated", "-p", "drain",
    )
    assert code == 0
    assert out == r
    # The CLI keeps its simulated cluster next to the journal, as asked.
    assert json.loads((tmp_path / "cli.jsonl.sim.json").read_text())["reboots"] == {"k8s-master-2": 1}


def test_a_journal_that_records_a_run_is_refused_unless_resumed(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"journal": tmp_path / "j.jsonl", "sim_state": tmp_path / "sim.json", "policy": "drain"}
    assert hapy.disrupt("reboot", "k8s-master-2", HA, **kw)["result"] == "ran"
    with pytest.raises(hapy.ConfigError, match="already records a run"):
        hapy.disrupt("reboot", "k8s-master-2", HA, **kw)
    again = hapy.disrupt("reboot", "k8s-master-2", HA, resume=True, **kw)
    assert again["outcome"] == {"outcome": "completed"}, again
    # Resumed, nothing is done twice: one reboot.
    assert json.loads((tmp_path / "sim.json").read_text())["reboots"] == {"k8s-master-2": 1}


def test_progress_reaches_on_event_as_it_happens_and_the_logger_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What hacli prints on stderr reaches Python: each step's begin and
    end (its id and status) and the failure, in order, to `on_event`; to
    the `hapy` logger when no callback is given."""
    got: list[dict[str, str]] = []
    kw: dict[str, Any] = {
        "command": ["apt-get", "-y", "upgrade"],
        "policy": "drain",
        "fail": ["run-command/k8s-master-3"],
    }
    r = hapy.disrupt(
        "run", "k8s-master-3", HA, journal=tmp_path / "a.jsonl", sim_state=tmp_path / "a.json",
        on_event=got.append, **kw,
    )
    assert r["outcome"]["outcome"] == "rolled-back", r
    steps = [(e["step"], e["status"]) for e in got if e["kind"] == "step"]
    assert ("run/k8s-master-3/run", "begun") in steps, got
    assert ("run/k8s-master-3/run", "failed") in steps, got
    assert steps.index(("run/k8s-master-3/run", "begun")) < steps.index(("run/k8s-master-3/run", "failed"))
    assert any(s == "rolling-back" for _, s in steps), got
    failed = next(e for e in got if e.get("status") == "failed")
    assert failed["message"].startswith("FAILED run/k8s-master-3/run: "), failed

    caplog.set_level("INFO", logger="hapy")
    hapy.disrupt(
        "run", "k8s-master-3", HA, journal=tmp_path / "b.jsonl", sim_state=tmp_path / "b.json", **kw
    )
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "hapy"]
    assert any(m.startswith("step run/k8s-master-3/run: ") for m in logged), logged
    assert any(m.startswith("FAILED run/k8s-master-3/run") for m in logged), logged


def test_an_exception_in_on_event_is_raised_after_the_operation_ends(tmp_path: Path) -> None:
    """A failing callback never leaves a disruption half-done: the run
    completes (the lock released), then the callback's exception is raised."""
    def boom(e: dict[str, str]) -> None:
        raise RuntimeError(f"callback failed on {e['kind']}")

    state = tmp_path / "sim.json"
    with pytest.raises(RuntimeError, match="callback failed"):
        hapy.disrupt(
            "reboot", "k8s-master-2", HA, journal=tmp_path / "j.jsonl", sim_state=state,
            policy="drain", on_event=boom,
        )
    sim = json.loads(state.read_text())
    assert sim["reboots"] == {"k8s-master-2": 1}
    assert sim["lock_holder"] is None
