"""Loading topologies, states and policies from files, strings and dicts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import hapy
from conftest import HA, KURED, SINGLE, state_path

ALL_STATES = sorted(p.stem for p in (HA.parents[1] / "state").glob("ha-*.yaml"))


def test_topology_from_file_str_and_pathlike_agree() -> None:
    assert hapy.Topology.from_file(str(HA)) == hapy.Topology.from_file(HA)


def test_topology_properties_match_its_dict(ha: hapy.Topology) -> None:
    d = ha.to_dict()
    assert ha.cluster == d["cluster"]
    assert ha.nodes == [n["name"] for n in d["nodes"]]
    assert ha.control_plane_nodes == [
        n["name"] for n in d["nodes"] if n["role"] == "control-plane"
    ]
    assert ha.hypervisors == [h["name"] for h in d["hypervisors"]]
    assert len(ha.control_plane_nodes) == 3
    assert "Topology" in repr(ha) and ha.cluster in repr(ha)


def test_topology_warnings_carry_file_line_column(ha: hapy.Topology) -> None:
    # ha.yaml puts all three masters on one hypervisor host: a warning, not an error.
    assert ha.warnings, "expected the one-failure-domain warning"
    for w in ha.warnings:
        assert re.match(rf"{re.escape(str(HA))}:\d+:\d+: warning: ", w), w


@pytest.mark.parametrize("path", [HA, SINGLE])
def test_topology_dict_round_trip(path: Path) -> None:
    t = hapy.Topology.from_file(path)
    d = t.to_dict()
    again = hapy.Topology.from_dict(d)
    assert again == t
    assert again.to_dict() == d


def test_topology_from_yaml_and_json_strings(ha: hapy.Topology) -> None:
    assert hapy.Topology.from_yaml(HA.read_text()) == ha
    assert hapy.Topology.from_yaml(json.dumps(ha.to_dict())) == ha
    assert hapy.Topology.from_yaml(HA.read_text(), name="mine.yaml").warnings[0].startswith(
        "mine.yaml:"
    )


def test_topologies_differ(ha: hapy.Topology) -> None:
    assert ha != hapy.Topology.from_file(SINGLE)
    assert ha != "not a topology"


@pytest.mark.parametrize("name", ALL_STATES)
def test_state_dict_round_trip(ha: hapy.Topology, name: str) -> None:
    s = hapy.State.from_file(state_path(name), ha)
    d = s.to_dict()
    again = hapy.State.from_dict(d, ha)
    assert again == s
    assert again.to_dict() == d
    assert hapy.State.from_yaml(json.dumps(d), ha) == s
    assert hapy.State.from_yaml(state_path(name).read_text(), ha) == s


def test_state_observed_at_is_aware_utc(healthy: hapy.State) -> None:
    import datetime as dt

    at = healthy.observed_at
    assert at.utcoffset() == dt.timedelta(0)
    assert at.isoformat().replace("+00:00", "Z") == healthy.to_dict()["observedAt"]
    assert "State" in repr(healthy)
    assert isinstance(healthy.warnings, list)


def test_state_dict_accepts_datetime_values(ha: hapy.Topology, healthy: hapy.State) -> None:
    d = healthy.to_dict()
    d["observedAt"] = healthy.observed_at  # a datetime, not a string
    assert hapy.State.from_dict(d, ha) == healthy


def test_policy_builtins() -> None:
    names = hapy.policies()
    assert "reboot" in names and "upgrade" in names
    for name in names:
        p = hapy.Policy.builtin(name)
        assert p.name == name
        assert p.rules, name
        assert p.description
        assert hapy.Policy.from_dict(p.to_dict()) == p
        assert name in repr(p)
    # The kill switch halts every disruption, whatever the built-in policy.
    for name in names:
        assert "kill-switch" in hapy.Policy.builtin(name).rules, name
    assert "alerts" in hapy.Policy.builtin("reboot").rules


def test_policy_file_string_and_dict_agree() -> None:
    p = hapy.Policy.from_file(KURED)
    assert p.name == "kured-gate"
    assert "reboot-window" in p.rules
    assert hapy.Policy.from_yaml(KURED.read_text()) == p
    assert hapy.Policy.from_dict(p.to_dict()) == p
    assert p != hapy.Policy.builtin("reboot")


def test_actions_are_the_policies_for_them() -> None:
    assert set(hapy.actions()) <= set(hapy.policies())
    assert "remove-member" in hapy.actions()


def test_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", hapy.__version__)
