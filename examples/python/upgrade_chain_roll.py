#!/usr/bin/env python3
"""Upgrade-chain step with hapy: a rolling `kubeadm upgrade` of every node.

The masters go one at a time (a soak after each), each a planned disruption
with a journal: gate and lock, drain its load-balancer backend, move etcd
leadership away, cordon and drain, `kubeadm upgrade apply` on the first
master and `kubeadm upgrade node` on the others, wait until healthy, put the
backend back, uncordon, release the lock. The roll stops at the first node
that fails (restored: backend ready, uncordoned) and names the step; run it
again with --resume once the cause is fixed. Then the workers.

    python examples/python/upgrade_chain_roll.py -t examples/topology/ha.yaml \\
        --to v1.33.2 --journal-dir /tmp/roll --soak 600

The backend is the simulated one by default (a rehearsal: its state is kept
in JOURNAL_DIR/sim.json); --fail OP/NODE injects a failure, e.g.
`--fail upgrade/k8s-master-2`. With --backend live it runs on the cluster,
as `hacli roll --backend live` does: --kubeconfig and --etcd-pki reach it
(else KUBECONFIG and the topology's etcd.pki), the nodes over SSH with
--ssh-identity and --known-hosts (else the topology's `ssh`), the load
balancer as the topology says. Exit codes are the CLI's: 0 every node done,
1 the roll stopped, 2 bad input or the cluster could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import hapy


def summary(node: dict[str, Any]) -> str:
    name = node["node"]
    if node["result"] == "denied":
        return f"{name}: DENIED: " + "; ".join(node["reasons"])
    outcome = node["outcome"]
    if outcome["outcome"] == "completed":
        return f"{name}: done"
    if outcome["outcome"] == "rolled-back":
        return f"{name}: FAILED at step {outcome['step']}: {outcome['error']} (restored)"
    return f"{name}: {outcome['outcome']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("-t", "--topology", required=True)
    p.add_argument("--to", required=True, help="the Kubernetes version, e.g. v1.33.2")
    p.add_argument("--journal-dir", required=True, type=Path)
    p.add_argument("--soak", type=float, default=600.0, help="seconds after each master")
    p.add_argument("--nodes", default="", help="comma-separated; every node by default")
    p.add_argument("--policy", default="upgrade")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail", action="append", default=[], metavar="OP/NODE")
    p.add_argument("--json", type=Path, help="write the roll's report here")
    p.add_argument("--idle-bound", type=float, default=30.0, help="seconds to wait for a drained backend's sessions")
    p.add_argument("--backend", choices=["simulated", "live"], default="simulated")
    p.add_argument("--kubeconfig", type=Path, help="live: the cluster's kubeconfig")
    p.add_argument("--etcd-pki", type=Path, help="live: etcd's CA and client pair (kubeadm layout)")
    p.add_argument("--ssh-identity", type=Path, help="live: the nodes' SSH key")
    p.add_argument("--known-hosts", type=Path, help="live: the nodes' known_hosts")
    a = p.parse_args(argv)
    live: dict[str, Any] = {}
    if a.backend == "live":
        live = {
            "kubeconfig": a.kubeconfig,
            "etcd_pki": a.etcd_pki,
            "ssh_identity": a.ssh_identity,
            "known_hosts": a.known_hosts,
            "deadline": 6.0,
        }
    try:
        report = hapy.roll(
            "upgrade",
            a.topology,
            version=a.to,
            journal_dir=a.journal_dir,
            backend=a.backend,
            sim_state=a.journal_dir / "sim.json" if a.backend == "simulated" else None,
            nodes=[n for n in a.nodes.split(",") if n] or None,
            soak=a.soak,
            policy=a.policy,
            identity="upgrade-chain",
            idle_bound=a.idle_bound,
            fail=a.fail or None,
            resume=a.resume,
            **live,
        )
    except (hapy.ConfigError, hapy.ObserveError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for node in report["nodes"]:
        print(summary(node))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    if report["notStarted"] or any(
        n["result"] != "ran" or n["outcome"]["outcome"] != "completed" for n in report["nodes"]
    ):
        print("not started: " + (", ".join(report["notStarted"]) or "none"))
        return 1
    print("upgrade chain: every node upgraded to " + a.to)
    return 0


if __name__ == "__main__":
    sys.exit(main())
