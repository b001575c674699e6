"""The Python examples (examples/python/) and the benchmark script run, and
agree with hapy.evaluate called directly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hapy
from conftest import AT, EXAMPLES, HA, KURED, REPO, state_path

PREFLIGHT = EXAMPLES / "python" / "upgrade_preflight.py"
KURED_GATE = EXAMPLES / "python" / "kured_gate.py"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "state", ["ha-healthy", "ha-kill-switch", "ha-alert-firing", "ha-master-notready", "ha-etcd-unreachable"]
)
@pytest.mark.parametrize("node", ["k8s-master", "k8s-master-2", "k8s-node1"])
def test_preflight_for_one_node_matches_evaluate(tmp_path: Path, state: str, node: str) -> None:
    out = tmp_path / "verdict.json"
    p = run(PREFLIGHT, "-t", HA, "-s", state_path(state), "--at", AT, "--node", node, "--json", out)
    v = hapy.evaluate("upgrade", node, HA, state_path(state), requester="upgrade-chain", at=AT)
    assert p.returncode == v.exit_code, p.stdout + p.stderr
    assert json.loads(out.read_text()) == [v.to_dict()]
    assert f"{node}: {v.decision.upper()}" in p.stdout
    for f in v.blocking:
        assert f"{f.rule}: {f.message}" in p.stdout
    for gate in ["kill-switch", "alerts", "quiet baseline", "quorum"]:
        assert gate in p.stdout


def test_preflight_walk_picks_the_first_node_allowed() -> None:
    topo = hapy.Topology.from_file(HA)
    state = hapy.State.from_file(state_path("ha-healthy"), topo)
    first = next(
        n for n in topo.control_plane_nodes
        if hapy.evaluate("upgrade", n, topo, state, requester="upgrade-chain", at=AT).allowed
    )
    p = run(PREFLIGHT, "-t", HA, "-s", state_path("ha-healthy"), "--at", AT)
    assert p.returncode == 0
    assert p.stdout.strip().endswith(f"next: kubeadm upgrade on {first}")


def test_preflight_walk_stops_at_the_kill_switch() -> None:
    p = run(PREFLIGHT, "-t", HA, "-s", state_path("ha-kill-switch"), "--at", AT)
    assert p.returncode == 1
    assert p.stdout.count("DENY") == 1, p.stdout
    assert "no node may be upgraded now" in p.stdout


def test_preflight_bad_input_exits_2(tmp_path: Path) -> None:
    p = run(PREFLIGHT, "-t", HA, "-s", tmp_path / "missing.yaml")
    assert p.returncode == 2
    assert "missing.yaml: cannot read" in p.stderr


@pytest.mark.parametrize("policy", ["reboot", str(KURED)])
@pytest.mark.parametrize("state", ["ha-healthy", "ha-master-notready", "ha-soak-open"])
def test_kured_gate_matches_evaluate(state: str, policy: str) -> None:
    topo = hapy.Topology.from_file(HA)
    s = hapy.State.from_file(state_path(state), topo)
    wants = {n["name"]: bool(n.get("rebootRequired")) for n in s.to_dict()["nodes"]}
    assert any(wants.values()) and not all(wants.values())
    for node in topo.nodes:
        p = run(KURED_GATE, node, "-t", HA, "-s", state_path(state), "-p", policy, "--at", AT)
        v = hapy.evaluate("reboot", node, topo, s, policy=policy, requester=f"kured/{node}", at=AT)
        expected = 0 if wants[node] and v.allowed else 1
        assert p.returncode == expected, (node, p.stderr)
        if not wants[node]:
            assert "no reboot required" in p.stderr
        elif not v.allowed:
            for f in v.blocking:
                assert f.rule in p.stderr


def test_kured_gate_node_from_environment() -> None:
    import os

    env = dict(os.environ, KURED_NODE_ID="k8s-master-2")
    p = subprocess.run(
        [sys.executable, str(KURED_GATE), "-t", str(HA), "-s", str(state_path("ha-healthy")), "--at", AT],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert "k8s-master-2" in p.stderr
    assert hapy.evaluate("reboot", "k8s-master-2", HA, state_path("ha-healthy"), at=AT).allowed
    assert p.returncode == 0, p.stderr


def test_kured_gate_says_not_now_on_a_stale_state() -> None:
    # The case: a state file months old said "safe now" (exit 0).
    # The verdict is as of now: the stale state is unknown, so no reboot.
    p = run(KURED_GATE, "k8s-master-2", "-t", HA, "-s", state_path("ha-healthy"))
    assert p.returncode == 1, p.stderr
    assert "reboot required but unknown" in p.stderr
    assert "state-fresh: the state is " in p.stderr and " old (observed at 2026-05-21T12:00:00Z" in p.stderr


def test_preflight_says_unknown_on_a_stale_state() -> None:
    p = run(PREFLIGHT, "-t", HA, "-s", state_path("ha-healthy"), "--node", "k8s-master-2")
    assert p.returncode == 3, p.stdout + p.stderr
    assert "state-fresh" in p.stdout


def test_benchmark_runs_and_prints_its_figures() -> None:
    # The benchmark runs and reports against its target; whether the target
    # is met is the benchmark's business (a release wheel, a quiet machine:
    # `verdict.py --check`), not a timed test's (this wheel is a dev build).
    bench = REPO / "crates" / "hapy" / "benches" / "verdict.py"
    p = run(bench, "--number", "300", "--repeat", "3")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "us  evaluate, loaded objects" in p.stdout
    assert "target: < 20 us per offline verdict from Python: " in p.stdout
