"""hapy.remediate(confirm=True): the same run as `hacli remediate --confirm`
(haops::remediate::run_once over run_outcome). Its refusals without a lab
(no spare, a state standing for the live cluster, a spare that does not
parse: each a ConfigError, nothing read or written); then on the local lab
(crates/hapy/examples/hapy_lab.rs; skipped, and said so, without etcd or
haproxy): a master's Node NotReady while its etcd member still answers is
to be replaced, the dead-master plan refuses under the lock, the attempt
fails touching nothing; with a budget of one the next run is refused
(retry-budget), again touching nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hapy
from conftest import HA
from test_live import lab, reach

__all__ = ["lab"]


def spare_file(tmp_path: Path, address: str = "198.18.20.99") -> Path:
    # In the refusals a file only: nothing is contacted at this address.
    p = tmp_path / "spare.yaml"
    p.write_text(f"{{ name: k8s-master-9, role: control-plane, address: {address} }}\n")
    return p


def test_confirm_without_a_spare_or_a_journal_is_refused_touching_nothing(tmp_path: Path) -> None:
    memory = tmp_path / "memory.json"
    with pytest.raises(hapy.ConfigError, match=r"needs spare= .* and journal="):
        hapy.remediate(HA, memory=memory, confirm=True, journal=tmp_path / "j")
    with pytest.raises(hapy.ConfigError, match=r"needs spare= .* and journal="):
        hapy.remediate(HA, memory=memory, confirm=True, spare=spare_file(tmp_path))
    assert not memory.exists()
    assert not list(tmp_path.glob("j*"))


def test_confirm_acts_on_the_live_cluster_only(tmp_path: Path) -> None:
    memory = tmp_path / "memory.json"
    with pytest.raises(hapy.ConfigError, match="state= and at= cannot stand for it"):
        hapy.remediate(
            HA, memory=memory, confirm=True, spare=spare_file(tmp_path), journal=tmp_path / "j",
            state={"observedAt": "2026-05-21T12:00:00Z"},
        )
    bad = tmp_path / "bad-spare.yaml"
    bad.write_text("name: [m9\n")
    with pytest.raises(hapy.ConfigError, match=f"spare={bad}"):
        hapy.remediate(HA, memory=memory, confirm=True, spare=bad, journal=tmp_path / "j")
    assert not memory.exists()


def test_confirm_fails_once_then_stops_at_its_budget_touching_nothing(
    lab: dict[str, Any], tmp_path: Path
) -> None:
    topo = hapy.Topology.from_file(lab["topology"])
    target = lab["masters"][1]
    address = next(n["address"] for n in topo.to_dict()["nodes"] if n["name"] == target)
    spare = spare_file(tmp_path, address.rsplit(".", 1)[0] + ".19")
    memory, journal = tmp_path / "memory.json", tmp_path / "remediate.jsonl"
    r = reach(lab)
    kw: dict[str, Any] = {
        "memory": memory, "confirm": True, "spare": spare, "journal": journal,
        "unhealthy_for": 0, "min_healthy_period": 0, "max_retries": 1, "identity": "pytest-remediate",
    }
    lab["control"](f"notready {target}")
    try:
        first = hapy.remediate(topo, **kw, **r)
        assert (first["decision"], first.get("class"), first.get("node")) == ("refused", "failed", target), first
        assert "answers again: its etcd member" in first.get("reason", ""), first
        attempts = json.loads(memory.read_text())["attempts"]
        assert [(a["node"], a["succeeded"]) for a in attempts] == [(target, False)], attempts
        second = hapy.remediate(topo, **kw, **r)
        assert (second["decision"], second.get("class")) == ("refused", "retry-budget"), second
        assert "retry budget is spent" in second.get("reason", ""), second
        assert len(json.loads(memory.read_text())["attempts"]) == 1
    finally:
        lab["control"](f"ready {target}")
    # Nothing touched: no journal, the lock released, the master still a Node
    # and an etcd member.
    assert not list(tmp_path.glob("remediate.jsonl*"))
    assert hapy.lock_show(kubeconfig=lab["kubeconfig"], lock_lease=r["lock_lease"]).holder is None
    seen = hapy.observe(topo, **r).to_dict()
    assert target in [n["name"] for n in seen["nodes"]]
    assert sorted(m["name"] for m in seen["etcd"]["members"]) == sorted(lab["masters"])
