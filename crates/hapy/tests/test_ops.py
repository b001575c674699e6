"""hapy.plan, hapy.apply, hapy.simulate, hapy.remove_master and
hapy.replace_master on the simulated backend: the same functions of the live
operations layer as `hacli plan|apply|simulate|remove-master|replace-master`,
so the results are the CLI's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hapy
from conftest import HA, SINGLE, Cli

CONFIRM = [
    "cutover/external/woodpecker",
    "cutover/external/dev-vm",
    "verify/pinned-workloads/k8s-master",
]

PVE = """
cluster: lab
controlPlaneEndpoint: { address: 198.18.20.100, port: 6443 }
loadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: "198.18.20.100:6443" }
hypervisors:
  - { name: pve1, memoryGiB: 128, cpus: 32 }
nodes:
"""


def masters(*names: tuple[str, int]) -> str:
    return PVE + "".join(
        f"  - {{ name: {n}, role: control-plane, address: 198.18.20.1{i}, hypervisor: pve1,"
        f" vmid: 10{i}, cpus: 2, memoryGiB: 4, diskGiB: 32 }}\n"
        for n, i in names
    )


def test_plan_is_the_clis_plan(cli: Cli) -> None:
    got = hapy.plan(SINGLE, HA, template=9000)
    assert got["result"] == "planned", got
    want, _, code = cli.json("plan", "--from", SINGLE, "--to", HA, "--template", "9000")
    assert code == 0
    assert got["plan"] == want


def test_a_plan_without_a_template_is_refused_naming_it() -> None:
    got = hapy.plan(SINGLE, HA)
    assert got["result"] == "refused", got
    assert any("template" in r for r in got["reasons"]), got


def test_apply_rehearses_the_migration_and_resumes_only_when_asked(tmp_path: Path) -> None:
    planned = hapy.plan(SINGLE, HA, template=9000)
    journal = tmp_path / "run.jsonl"
    waiting = hapy.apply(planned["plan"], journal=journal)
    assert waiting["outcome"]["outcome"] == "awaiting-confirmation", waiting
    assert (tmp_path / "run.jsonl.sim.json").exists()
    with pytest.raises(hapy.ConfigError, match="already records a run"):
        hapy.apply(planned["plan"], journal=journal, confirm=CONFIRM)
    done = hapy.apply(planned["plan"], journal=journal, resume=True, confirm=CONFIRM)
    assert done == {"outcome": {"outcome": "completed"}, "measured": None}


def test_apply_reads_a_plan_file_and_names_a_bad_one(tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text('{"steps": ')
    with pytest.raises(hapy.ConfigError, match=r"plan\.json:1:\d+: not a plan"):
        hapy.apply(bad, journal=tmp_path / "j.jsonl")
    planned = hapy.plan(SINGLE, HA, template=9000)
    with pytest.raises(hapy.ConfigError, match="backend `real`"):
        hapy.apply(planned["plan"], journal=tmp_path / "j.jsonl", backend="real")  # type: ignore[arg-type]


def test_simulate_finds_no_critical_step_in_the_example_migration() -> None:
    planned = hapy.plan(SINGLE, HA, template=9000)
    report = hapy.simulate(planned["plan"], failures=1)
    assert report["critical"] == [], report
    with pytest.raises(hapy.ConfigError, match="at most 3"):
        hapy.simulate(planned["plan"], failures=4)


def test_remove_master_refuses_one_of_three_and_replace_master_ends_with_three_voters(
    tmp_path: Path,
) -> None:
    current = hapy.Topology.from_yaml(masters(("m1", 1), ("m2", 2), ("m3", 3)))
    target = hapy.Topology.from_yaml(masters(("m2", 2), ("m3", 3), ("m4", 4)))
    refused = hapy.remove_master("m2", current, dry_run=True)
    assert refused["result"] == "refused", refused
    assert any("leaves 2 etcd voters" in r for r in refused["reasons"]), refused
    planned = hapy.replace_master("m1", "m4", current, target, template=9000, dry_run=True)
    assert planned["result"] == "planned", planned
    ids = [s["id"] for p in planned["plan"]["phases"] for s in p["steps"]]
    assert "join/m4/join" in ids and "remove/m1/member" in ids, ids
    with pytest.raises(hapy.ConfigError, match="journal"):
        hapy.replace_master("m1", "m4", current, target, template=9000)
    state = tmp_path / "sim.json"
    ran = hapy.replace_master(
        "m1", "m4", current, target, template=9000, journal=tmp_path / "r.jsonl",
        backend="simulated", sim_state=state, identity="tester",
    )
    assert ran["result"] == "ran", ran
    assert ran["report"]["result"] == "ran", ran
    assert ran["report"]["outcome"] == {"outcome": "completed"}, ran
    sim = json.loads(state.read_text())
    assert sim["etcd"] == {"m2": False, "m3": False, "m4": False}
    assert sorted(sim["pool"]) == ["m2", "m3", "m4"]
    assert "101" not in sim["vms"], "the old VM is gone"
    assert sim["lock_holder"] is None
