#!/usr/bin/env python3
"""Upgrade-chain preflight with hapy: may the chain touch NODE now?

The upgrade chain calls this before each node's `kubeadm upgrade` (masters
first, then workers). It evaluates the built-in `upgrade` policy: the
kill-switch ConfigMap, critical alerts, a 600 s quiet baseline (no node
changed readiness recently), and control-plane quorum (etcd quorum and
leader, masters Ready, apiservers, load balancer, PDBs, the lock).

    hacli observe -t topology.yaml -O state.json && \
        python examples/python/upgrade_preflight.py -t topology.yaml -s state.json --node k8s-master-2

The verdict is as of now: observe right before asking (as above), since a
state older than the policy's 5 minutes is unknown. The bundled example
states were observed at 2026-05-21T12:00:00Z; replay one as of then:

    python examples/python/upgrade_preflight.py -t examples/topology/ha.yaml \
        -s examples/state/ha-healthy.yaml --at 2026-05-21T12:00:00Z --node k8s-master-2

Without --node it walks the nodes in the chain's order and names the first
one that may go now. Exit codes are the CLI's: 0 go, 1 refused, 2 bad
input, 3 unknown (something could not be observed, or the state is stale;
never a go).
"""

from __future__ import annotations

import argparse
import json
import sys

import hapy

# The preflight's gates as the chain reports them, by hapy rule id.
GATES = {
    "kill-switch": ["kill-switch"],
    "alerts": ["alerts"],
    "quiet baseline": ["soak", "nodes-ready", "node-drift"],
    "quorum": [
        "etcd-quorum",
        "etcd-two-voters",
        "etcd-leader",
        "etcd-learner",
        "etcd-alarms",
        "control-plane-ready",
        "apiserver-ready",
        "load-balancer",
    ],
}


def gate_summary(verdict: hapy.Verdict) -> dict[str, str]:
    """Worst severity per gate: pass, warn, unknown or deny."""
    order = ["pass", "warn", "unknown", "deny"]
    out: dict[str, str] = {}
    for gate, rules in GATES.items():
        found = [f.severity for f in verdict.findings if f.rule in rules]
        out[gate] = max(found, key=order.index) if found else "not checked"
    return out


def report(verdict: hapy.Verdict) -> None:
    print(f"{verdict.target}: {verdict.decision.upper()} (policy {verdict.policy})")
    for gate, result in gate_summary(verdict).items():
        print(f"  {gate:<15} {result}")
    for f in verdict.blocking:
        print(f"    {f.severity} {f.rule}: {f.message}")
        if f.remediation:
            print(f"      -> {f.remediation}")


def chain_order(topology: hapy.Topology) -> list[str]:
    masters = topology.control_plane_nodes
    return masters + [n for n in topology.nodes if n not in masters]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-t", "--topology", required=True)
    p.add_argument("-s", "--state", required=True)
    p.add_argument("--node", help="the node the chain is about to upgrade")
    p.add_argument("-p", "--policy", default="upgrade", help="built-in name or policy file")
    p.add_argument("--at", help="RFC 3339 time or 'now' (default: now; a stale state is unknown)")
    p.add_argument("--requester", default="upgrade-chain")
    p.add_argument("--json", metavar="FILE", help="write the verdict(s) here, as hacli -o json")
    a = p.parse_args(argv)

    try:
        topology = hapy.Topology.from_file(a.topology)
        state = hapy.State.from_file(a.state, topology)
        nodes = [a.node] if a.node else chain_order(topology)
        verdicts = []
        for node in nodes:
            v = hapy.evaluate(
                "upgrade", node, topology, state, policy=a.policy, at=a.at, requester=a.requester
            )
            verdicts.append(v)
            report(v)
            if v.allowed and not a.node:
                break
            if any(f.rule == "kill-switch" for f in v.blocking):
                break  # the kill-switch halts every node: no point asking further
    except hapy.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if a.json:
        with open(a.json, "w") as out:
            json.dump([v.to_dict() for v in verdicts], out, indent=2)
    last = verdicts[-1]
    if last.allowed:
        print(f"next: kubeadm upgrade on {last.target}")
        return 0
    if not a.node:
        print("no node may be upgraded now")
        # Unknown only if nothing was refused outright.
        return 1 if any(v.decision == "deny" for v in verdicts) else 3
    return last.exit_code


if __name__ == "__main__":
    sys.exit(main())
