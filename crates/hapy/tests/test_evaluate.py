"""Verdicts: identical to `hacli check -o json` for the same inputs, and the
same whichever way the inputs are given."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest

import hapy
from conftest import AT, HA, KURED, SINGLE, Cli, state_path

# (topology, state, action, target, extra CLI args / evaluate kwargs)
CASES: list[tuple[Any, str, str, str, dict[str, str]]] = [
    (HA, "ha-healthy", "reboot", "k8s-master-2", {}),
    (HA, "ha-healthy", "reboot", "k8s-master", {}),
    (HA, "ha-healthy", "reboot", "pve", {}),
    (HA, "ha-healthy", "drain", "k8s-node2", {}),
    (HA, "ha-healthy", "upgrade", "k8s-master-2", {}),
    (HA, "ha-healthy", "reboot", "k8s-master-2", {"policy": str(KURED)}),
    (HA, "ha-healthy", "reboot", "k8s-master-2", {"policy": "shutdown"}),
    (HA, "ha-healthy", "reboot", "k8s-master-2", {"at": "2026-05-21T12:30:00Z"}),
    (HA, "ha-master-notready", "reboot", "k8s-master-2", {}),
    (HA, "ha-mid-join", "reboot", "k8s-master-2", {}),
    (HA, "ha-mid-join", "join", "k8s-master-3", {}),
    (HA, "ha-kill-switch", "upgrade", "k8s-master-2", {"requester": "pipeline"}),
    (HA, "ha-alert-firing", "upgrade", "k8s-node1", {}),
    (HA, "ha-soak-open", "reboot", "k8s-node1", {}),
    (HA, "ha-etcd-unreachable", "reboot", "k8s-master-2", {}),
    (SINGLE, "single-master", "reboot", "k8s-master", {}),
    (SINGLE, "single-master", "reboot", "k8s-node1", {}),
]


def _id(case: tuple[Any, str, str, str, dict[str, str]]) -> str:
    extra = ",".join(f"{k}={v.rsplit('/', 1)[-1]}" for k, v in case[4].items())
    return f"{case[1]}:{case[2]}:{case[3]}" + (f"[{extra}]" if extra else "")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_verdict_identical_to_cli_json(cli: Cli, case: tuple[Any, str, str, str, dict[str, str]]) -> None:
    topo, state, action, target, extra = case
    extra = {"at": AT, **extra}
    args: list[str] = []
    for key, value in extra.items():
        args += [f"--{key}", value]
    expected, stdout, code = cli.json(
        "check", action, target, "-t", topo, "-s", state_path(state), *args
    )
    v = hapy.evaluate(action, target, str(topo), str(state_path(state)), **extra)
    assert v.to_dict() == expected
    assert json.loads(v.to_json()) == expected
    assert '"kind": "Verdict"' in stdout
    assert v.exit_code == code
    # The attributes agree with the dict.
    assert v.decision == expected["decision"]
    assert v.allowed == (expected["decision"] == "allow")
    assert v.action == expected["action"] and v.target == expected["target"]
    assert v.affected == expected["affected"] and v.policy == expected["policy"]
    assert v.at.isoformat().replace("+00:00", "Z") == expected["at"]
    assert v.observed_at.isoformat().replace("+00:00", "Z") == expected["observedAt"]
    assert [f.to_dict() for f in v.findings] == expected["findings"]
    for f, e in zip(v.findings, expected["findings"]):
        assert (f.rule, f.severity, f.message) == (e["rule"], e["severity"], e["message"])
        assert f.remediation == e.get("remediation")
    assert [f.rule for f in v.blocking] == [
        e["rule"] for e in expected["findings"] if e["severity"] in ("deny", "unknown")
    ]


def test_the_cases_cover_every_decision() -> None:
    seen = {
        hapy.evaluate(c[2], c[3], str(c[0]), str(state_path(c[1])), **{"at": AT, **c[4]}).decision
        for c in CASES
    }
    assert seen == {"allow", "deny", "unknown"}


def test_inputs_as_objects_paths_and_dicts_agree(ha: hapy.Topology, healthy: hapy.State) -> None:
    base = hapy.evaluate("reboot", "k8s-master", ha, healthy, at=AT)
    assert not base.allowed
    assert hapy.evaluate("reboot", "k8s-master", HA, state_path("ha-healthy"), at=AT) == base
    assert hapy.evaluate("reboot", "k8s-master", ha.to_dict(), healthy.to_dict(), at=AT) == base
    assert hapy.evaluate("reboot", "k8s-master", ha, healthy, policy="reboot", at=AT) == base
    assert hapy.evaluate("reboot", "k8s-master", ha, healthy, policy=hapy.Policy.builtin("reboot"), at=AT) == base
    assert hapy.evaluate("reboot", "k8s-master", ha, healthy, policy=hapy.Policy.builtin("reboot").to_dict(), at=AT) == base


def test_policy_path_name_object_and_dict_agree(ha: hapy.Topology, healthy: hapy.State) -> None:
    by_path = hapy.evaluate("reboot", "k8s-master-2", ha, healthy, policy=KURED, at=AT)
    assert by_path.policy == "kured-gate"
    assert "reboot-window" in [f.rule for f in by_path.blocking]
    kured = hapy.Policy.from_file(KURED)
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, policy=str(KURED), at=AT) == by_path
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, policy=kured, at=AT) == by_path
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, policy=kured.to_dict(), at=AT) == by_path


def test_at_defaults_to_now_and_a_stale_state_is_unknown(ha: hapy.Topology, healthy: hapy.State) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    v = hapy.evaluate("reboot", "k8s-master-2", ha, healthy)
    assert before - dt.timedelta(seconds=1) <= v.at
    assert v.observed_at == healthy.observed_at
    # The example state is months old: unknown, with its age named.
    assert v.decision == "unknown" and not v.allowed
    fresh = [f for f in v.blocking if f.rule == "state-fresh"]
    assert fresh and " old (observed at 2026-05-21T12:00:00Z" in fresh[0].message
    assert "the policy accepts at most 5m" in fresh[0].message
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=None).decision == "unknown"
    # Replaying it as of its observation is an explicit choice.
    then = hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=healthy.observed_at)
    assert then.allowed and then.at == healthy.observed_at
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=AT) == then


def test_at_accepts_datetimes_and_strings(ha: hapy.Topology, healthy: hapy.State) -> None:
    v = hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=AT)
    later = healthy.observed_at + dt.timedelta(minutes=30)
    as_dt = hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=later)
    assert as_dt.at == later
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=later.isoformat()) == as_dt
    paris = dt.timezone(dt.timedelta(hours=2))
    assert hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at=later.astimezone(paris)) == as_dt
    # 30 minutes after the observation the state is stale: never "allow".
    assert v.allowed and not as_dt.allowed
    assert "state-fresh" in [f.rule for f in as_dt.blocking]


def test_at_now_is_the_clock(ha: hapy.Topology, healthy: hapy.State) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    v = hapy.evaluate("reboot", "k8s-master-2", ha, healthy, at="now")
    after = dt.datetime.now(dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= v.at <= after + dt.timedelta(seconds=1)


def test_requester_holding_the_lock_is_not_blocked(ha: hapy.Topology, healthy: hapy.State) -> None:
    d = healthy.to_dict()
    d["lock"] = {"holder": "kured/k8s-node1", "renewedAt": d["observedAt"], "ttl": "10m"}
    locked = hapy.State.from_dict(d, ha)
    other = hapy.evaluate("reboot", "k8s-master-2", ha, locked, requester="someone-else", at=AT)
    mine = hapy.evaluate("reboot", "k8s-master-2", ha, locked, requester="kured/k8s-node1", at=AT)
    assert "lock" in [f.rule for f in other.blocking]
    assert "lock" not in [f.rule for f in mine.blocking]
    assert mine.allowed


def test_verdict_repr_names_the_blocking_rules(ha: hapy.Topology, healthy: hapy.State) -> None:
    v = hapy.evaluate("reboot", "k8s-master", ha, healthy, at=AT)
    assert repr(v).startswith("<Verdict deny: reboot k8s-master")
    for f in v.blocking:
        assert f.rule in repr(v)
        assert f.rule in repr(f)


def test_evaluate_from_threads(ha: hapy.Topology, healthy: hapy.State) -> None:
    expected = {n: hapy.evaluate("upgrade", n, ha, healthy, at=AT).to_dict() for n in ha.nodes}
    errors: list[str] = []

    def work() -> None:
        for _ in range(50):
            for n in ha.nodes:
                if hapy.evaluate("upgrade", n, ha, healthy, at=AT).to_dict() != expected[n]:
                    errors.append(n)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_status_identical_to_cli_json(cli: Cli, ha: hapy.Topology) -> None:
    for name in ["ha-healthy", "ha-etcd-unreachable", "ha-mid-join"]:
        expected, _, code = cli.json("status", "-t", HA, "-s", state_path(name), "--at", AT)
        assert code == 0
        state = hapy.State.from_file(state_path(name), ha)
        assert hapy.status(ha, state, at=AT) == expected
        assert hapy.status(HA, state_path(name), at=AT) == expected
    # By default, as of now: a stale state lets nothing go down.
    now = hapy.status(ha, state_path("ha-healthy"))
    assert now["disruptions"] and all(d["decision"] != "allow" for d in now["disruptions"])
    at = "2026-05-21T12:01:00Z"
    expected, _, _ = cli.json("status", "-t", HA, "-s", state_path("ha-healthy"), "--at", at)
    assert hapy.status(ha, state_path("ha-healthy"), at=at) == expected


def test_policies_identical_to_cli_json(cli: Cli) -> None:
    for name in hapy.policies():
        expected, _, _ = cli.json("policy", "show", name)
        assert hapy.Policy.builtin(name).to_dict() == expected
    expected, _, _ = cli.json("policy", "show", KURED)
    assert hapy.Policy.from_file(KURED).to_dict() == expected
    assert json.loads(json.dumps(expected)) == expected
