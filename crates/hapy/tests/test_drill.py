"""hapy.drill: the failover drill, run by the same function as `hacli drill`
(`haops::drill::drill`). Bad input is a ConfigError naming what is wrong,
as the CLI's exit 2 does; a drill that runs returns the `hacli.drill/v1`
report. Here the endpoint is 127.0.0.1:1 (nothing listens: every read is
refused) and the apiserver kill goes to 127.0.0.1:1 over SSH (refused), so
a real drill runs end to end without a cluster, and is reported, not
raised. Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hapy
from conftest import Cli

TOPOLOGY = """\
cluster: t
controlPlaneEndpoint: { address: 127.0.0.1, port: 1 }
nodes:
  - { name: m1, role: control-plane, address: 127.0.0.1 }
  - { name: w1, role: worker, address: 127.0.0.2 }
"""

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: { server: "https://127.0.0.1:1" }
users:
- name: u
  user: { token: t }
contexts:
- name: c
  context: { cluster: c, user: u }
current-context: c
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "t.yaml").write_text(TOPOLOGY)
    (tmp_path / "kc").write_text(KUBECONFIG)
    (tmp_path / "known_hosts").write_text("")
    return {"topology": tmp_path / "t.yaml", "kubeconfig": tmp_path / "kc", "known_hosts": tmp_path / "known_hosts"}


@pytest.mark.parametrize(
    ("node", "kwargs", "says"),
    [
        ("m1", {"planned": True}, "needs a journal"),
        ("m1", {"planned": True, "journal": "j.jsonl", "skip_gate": True}, "always gated"),
        ("m1", {"planned": True, "journal": "j.jsonl", "kill": "apiserver"}, "kill"),
        ("m1", {"journal": "j.jsonl"}, "only a planned drill"),
        ("m1", {"kill": "etcd"}, 'kill="etcd"'),
        ("nope", {"skip_gate": True}, "no node `nope` in the topology (nodes: m1, w1)"),
        ("w1", {"skip_gate": True}, "`w1` is a worker"),
        ("m1", {"skip_gate": True, "rate": 0.0}, "rate 0: give 0 < requests per second <= 1000"),
        ("m1", {"skip_gate": True}, "needs `hypervisor` (the Proxmox node) and `vmid`"),
    ],
)
def test_bad_input_is_a_config_error_naming_it(
    files: dict[str, Path], node: str, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(hapy.ConfigError, match=None) as e:
        hapy.drill(node, files["topology"], kubeconfig=files["kubeconfig"], **kwargs)
    assert says in str(e.value), str(e.value)


def test_a_negative_duration_is_a_value_error(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="duration=-1"):
        hapy.drill("m1", files["topology"], skip_gate=True, duration=-1.0)


@pytest.mark.parametrize(("node", "says"), [("nope", "no node `nope`"), ("w1", "is a worker")])
def test_the_cli_refuses_the_same_input_with_exit_2(files: dict[str, Path], cli: Cli, node: str, says: str) -> None:
    p = cli.run("drill", node, "--skip-gate", "--topology", files["topology"])
    assert p.returncode == 2, p.stderr
    assert says in p.stderr
    with pytest.raises(hapy.ConfigError, match=says):
        hapy.drill(node, files["topology"], skip_gate=True)


def drill_args(files: dict[str, Path]) -> dict[str, Any]:
    return {
        "kill": "apiserver",
        "skip_gate": True,
        "kubeconfig": files["kubeconfig"],
        "known_hosts": files["known_hosts"],
        "ssh_port": 1,
        "rate": 20.0,
        "duration": 1.5,
        "baseline": 0.3,
        "after": 0.2,
        "request_timeout": 0.5,
    }


def test_a_drill_whose_kill_is_refused_is_reported_with_exit_3(files: dict[str, Path], cli: Cli) -> None:
    events: list[dict[str, str]] = []
    r = hapy.drill("m1", files["topology"], on_event=events.append, **drill_args(files))
    assert r.outcome == "ran" and r.exit_code == 3 and not r.ok, r
    assert r.verdict is None and r.reason is None
    rep = r.report
    assert rep is not None
    assert rep["schema"] == "hacli.drill/v1"
    assert rep["mode"] == "unplanned-kill-apiserver"
    assert "kill -9 kube-apiserver on m1" in rep["disruption"]["action"]
    assert rep["disruption"]["error"].startswith("disruption:"), rep["disruption"]
    # Nothing listens on the endpoint: every read failed, and was counted.
    assert rep["total"]["sent"] >= 10 and rep["total"]["failed"] == rep["total"]["sent"], rep["total"]
    assert rep["lb"] is None and rep["bound"] is None
    assert any(e["kind"] == "warning" and "skip_gate" in e["message"] for e in events), events
    assert any(e["kind"] == "note" and e["message"].startswith("traffic: 20") for e in events), events
    assert any(e["kind"] == "note" and e["message"].startswith("disrupting m1") for e in events), events

    # The CLI: the same drill, the same exit code and report shape.
    p = cli.run(
        "drill", "m1", "--kill", "apiserver", "--skip-gate", "--topology", files["topology"],
        "--kubeconfig", files["kubeconfig"], "--known-hosts", files["known_hosts"], "--ssh-port", "1",
        "--rate", "20", "--duration", "1500ms", "--baseline", "300ms", "--after", "200ms",
        "--request-timeout", "500ms", "-o", "json",
    )  # fmt: skip
    assert p.returncode == 3, p.stderr
    cli_rep = json.loads(p.stdout)
    assert cli_rep["mode"] == rep["mode"] and cli_rep["disruption"]["action"] == rep["disruption"]["action"]
    assert cli_rep["disruption"]["error"] is not None


def test_an_exception_in_on_event_is_raised_after_the_drill(files: dict[str, Path]) -> None:
    seen: list[str] = []

    def boom(e: dict[str, str]) -> None:
        seen.append(e["message"])
        raise RuntimeError("the callback failed")

    with pytest.raises(RuntimeError, match="the callback failed"):
        hapy.drill("m1", files["topology"], on_event=boom, **drill_args(files))
    # The drill went on to its end: every later event was still delivered.
    assert any(m.startswith("restoring m1") for m in seen), seen


def test_without_skip_gate_a_cluster_that_cannot_be_observed_is_not_disrupted(
    files: dict[str, Path], cli: Cli
) -> None:
    # The gate is asked first; without the etcd client certificates it cannot
    # observe at all: ObserveError (the CLI's exit 3), before any traffic.
    args = drill_args(files)
    del args["skip_gate"]
    events: list[dict[str, str]] = []
    missing = files["topology"].parent / "no-pki"
    with pytest.raises(hapy.ObserveError, match="no-pki"):
        hapy.drill("m1", files["topology"], etcd_pki=missing, deadline=0.5, on_event=events.append, **args)
    assert not any(e["message"].startswith(("traffic", "disrupting")) for e in events), events
    p = cli.run(
        "drill", "m1", "--kill", "apiserver", "--topology", files["topology"], "--kubeconfig", files["kubeconfig"],
        "--etcd-pki", missing, "--deadline", "500ms",
    )  # fmt: skip
    assert p.returncode == 3, p.stderr
    assert "no-pki" in p.stderr and "disrupting" not in p.stderr, p.stderr
