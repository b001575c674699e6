"""Errors: the exception hierarchy and the core's messages, kept whole."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

import hapy
from conftest import HA, state_path


def test_hierarchy() -> None:
    assert issubclass(hapy.Error, Exception)
    assert issubclass(hapy.ConfigError, hapy.Error)
    assert issubclass(hapy.ObserveError, hapy.Error)
    assert not issubclass(hapy.ConfigError, hapy.ObserveError)
    assert hapy.ConfigError.__module__ == "hapy"
    assert "file:line:column" in (hapy.ConfigError.__doc__ or "")


def test_parse_error_names_file_line_column() -> None:
    text = "cluster: lab\ncontrolPlaneEndpoint: { address: 10.0.0.10 }\nnodes:\n  - { name: m1, role: bogus, address: 10.0.0.10 }\n"
    with pytest.raises(hapy.ConfigError) as e:
        hapy.Topology.from_yaml(text, name="lab.yaml")
    m = re.match(r"lab\.yaml:(\d+):(\d+): (.*)", str(e.value))
    assert m, str(e.value)
    line, column = int(m[1]), int(m[2])
    assert line == 4  # the line with the bad role
    assert text.splitlines()[line - 1][column - 1 :].startswith("bogus")
    assert "bogus" in m[3]


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(hapy.ConfigError, match="colour"):
        hapy.Topology.from_yaml("cluster: lab\ncolour: blue\n")


def test_validation_error_names_the_field(tmp_path: Path) -> None:
    bad = HA.read_text().replace("address: 10.0.20.105", "address: 10.0.20.100", 1)
    assert bad != HA.read_text()
    f = tmp_path / "dup.yaml"
    f.write_text(bad)
    with pytest.raises(hapy.ConfigError) as e:
        hapy.Topology.from_file(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: ")
    assert re.search(rf"{re.escape(str(f))}:\d+:\d+: error: nodes\[\d+\]\.address", msg), msg


def test_validation_error_from_a_dict_names_the_field(ha: hapy.Topology) -> None:
    d = ha.to_dict()
    d["nodes"][1]["name"] = d["nodes"][0]["name"]
    with pytest.raises(hapy.ConfigError, match=r"<dict>.*nodes\[1\]\.name"):
        hapy.Topology.from_dict(d)


def test_missing_file() -> None:
    with pytest.raises(hapy.ConfigError, match="nope.yaml: cannot read"):
        hapy.Topology.from_file("nope.yaml")
    with pytest.raises(hapy.ConfigError, match="nope.yaml"):
        hapy.evaluate("reboot", "k8s-master", HA, "nope.yaml")


def test_state_is_checked_against_the_topology(ha: hapy.Topology, healthy: hapy.State) -> None:
    d = healthy.to_dict()
    d["nodes"][3]["name"] = "not-in-topology"
    # A worker the topology does not know is a warning (drift), with its field.
    warned = hapy.State.from_dict(d, ha)
    assert any("nodes[3].name" in w and "not-in-topology" in w for w in warned.warnings)
    assert not healthy.warnings
    # A master it does not know is another cluster's state, or a topology out
    # of date: refused, naming what differs.
    d = healthy.to_dict()
    d["nodes"][0]["name"] = "not-in-topology"
    with pytest.raises(hapy.ConfigError, match=r"nodes\[0\]\.name: node `not-in-topology` carries the control-plane taint"):
        hapy.State.from_dict(d, ha)
    d = healthy.to_dict()
    d["cluster"] = "office"
    with pytest.raises(hapy.ConfigError, match="observed on cluster `office`, but the topology is of cluster `homelab`"):
        hapy.State.from_dict(d, ha)
    d = healthy.to_dict()
    d["nodes"][3]["name"] = "not-in-topology"
    # A node listed twice is an error.
    d["nodes"][0]["name"] = d["nodes"][1]["name"]
    with pytest.raises(hapy.ConfigError, match=r"nodes\[1\]\.name.*listed twice"):
        hapy.State.from_dict(d, ha)


def test_unknown_target_action_policy(ha: hapy.Topology, healthy: hapy.State) -> None:
    with pytest.raises(hapy.ConfigError, match=r"unknown target `k8s-master-9`.*known: k8s-master"):
        hapy.evaluate("reboot", "k8s-master-9", ha, healthy)
    with pytest.raises(hapy.ConfigError, match=r"unknown action `reboop`"):
        hapy.evaluate("reboop", "k8s-master", ha, healthy)
    with pytest.raises(hapy.ConfigError, match=r"unknown policy `nightly`"):
        hapy.evaluate("reboot", "k8s-master", ha, healthy, policy="nightly")
    with pytest.raises(hapy.ConfigError, match=r"unknown policy `nightly`"):
        hapy.Policy.builtin("nightly")


def test_bad_policy_documents() -> None:
    with pytest.raises(hapy.ConfigError, match=r"<string>:\d+:\d+: error: extends: unknown built-in policy `rebot`"):
        hapy.Policy.from_yaml("name: p\nextends: rebot\n")
    with pytest.raises(hapy.ConfigError, match=r"disable\[0\]: unknown rule `etcd-qorum`"):
        hapy.Policy.from_dict({"name": "p", "extends": "reboot", "disable": ["etcd-qorum"]})


def test_bad_times(ha: hapy.Topology, healthy: hapy.State) -> None:
    with pytest.raises(hapy.ConfigError, match="RFC 3339"):
        hapy.evaluate("reboot", "k8s-master", ha, healthy, at="yesterday")
    with pytest.raises(hapy.ConfigError, match="naive datetime"):
        hapy.evaluate("reboot", "k8s-master", ha, healthy, at=dt.datetime(2026, 5, 21, 12))
    with pytest.raises(TypeError, match="at: expected"):
        hapy.evaluate("reboot", "k8s-master", ha, healthy, at=1779364800)  # type: ignore[arg-type]


def test_wrong_types(ha: hapy.Topology, healthy: hapy.State) -> None:
    with pytest.raises(TypeError, match="topology: expected"):
        hapy.evaluate("reboot", "k8s-master", 42, healthy)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state: expected"):
        hapy.evaluate("reboot", "k8s-master", ha, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy: expected"):
        hapy.evaluate("reboot", "k8s-master", ha, healthy, policy=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hapy.State.from_file(state_path("ha-healthy"), "topology.yaml")  # type: ignore[arg-type]


def test_errors_are_catchable_as_the_base_class(ha: hapy.Topology, healthy: hapy.State) -> None:
    with pytest.raises(hapy.Error):
        hapy.evaluate("reboot", "nowhere", ha, healthy)
