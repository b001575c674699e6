#!/usr/bin/env python3
"""kured reboot gate with hapy: a `--reboot-sentinel-command` for kured.

kured reboots a node when its sentinel command exits 0. This gate says
"reboot required" only when the node wants a reboot (rebootRequired in the
observed state) AND the `reboot` policy allows it now: all nodes Ready,
calico-node running, 24 h soak, at least two other masters Ready, etcd
quorum kept and the leader moved away first, apiservers and load balancer
backends up, no PDB that blocks the drain, and nobody else holding the lock.

The verdict is as of now, and a state older than the policy's 5 minutes is
unknown (not now): observe right before asking, in the sentinel command
itself, e.g. kured's `--reboot-sentinel-command`:

    sh -c 'hacli observe -t /etc/hacli/topology.yaml -O /run/hacli/state.json &&
           python kured_gate.py -t /etc/hacli/topology.yaml -s /run/hacli/state.json'

(or `hacli sentinel`, which observes every cycle). The bundled example states
were observed at 2026-05-21T12:00:00Z; replay one as of then with --at:

    python examples/python/kured_gate.py k8s-master-2 -t examples/topology/ha.yaml \
        -s examples/state/ha-healthy.yaml --at 2026-05-21T12:00:00Z

NODE defaults to $KURED_NODE_ID (set by kured). Exit 0: reboot now; 1: not
now (or not needed, or unknown); 2: bad input. Reasons go to stderr, which
kured logs.
"""

from __future__ import annotations

import argparse
import os
import sys

import hapy


def reboot_required(state: hapy.State, node: str) -> bool:
    for n in state.to_dict().get("nodes") or []:
        if n["name"] == node:
            return bool(n.get("rebootRequired"))
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("node", nargs="?", default=os.environ.get("KURED_NODE_ID"))
    p.add_argument("-t", "--topology", required=True)
    p.add_argument("-s", "--state", required=True)
    p.add_argument("-p", "--policy", default="reboot", help="built-in name or policy file")
    p.add_argument("--at", help="RFC 3339 time or 'now' (default: now; a stale state is unknown)")
    a = p.parse_args(argv)
    if not a.node:
        p.error("NODE is required (or set KURED_NODE_ID)")

    try:
        topology = hapy.Topology.from_file(a.topology)
        state = hapy.State.from_file(a.state, topology)
        if not reboot_required(state, a.node):
            print(f"{a.node}: no reboot required", file=sys.stderr)
            return 1
        v = hapy.evaluate("reboot", a.node, topology, state, policy=a.policy, at=a.at,
                          requester=f"kured/{a.node}")
    except hapy.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if v.allowed:
        print(f"{a.node}: reboot required and safe now (policy {v.policy})", file=sys.stderr)
        return 0
    print(f"{a.node}: reboot required but {v.decision} (policy {v.policy}):", file=sys.stderr)
    for f in v.blocking:
        print(f"  {f.rule}: {f.message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
