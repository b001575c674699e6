#!/usr/bin/env python3
"""A planned reboot of one node of a live cluster with hapy.

Gate (--policy, else the built-in `reboot`), take the disruption lock, drain
the node's load-balancer backend, move etcd leadership away, cordon and
drain, reboot, wait until healthy, restore (backend ready, uncordon), release
the lock; with a journal, so a killed run resumes (--resume). The same haops
function as `hacli disrupt reboot NODE --backend live`:

    python examples/python/live_disruption.py -t topology.yaml NODE --journal NODE.jsonl

Reached through --kubeconfig, --etcd and --etcd-pki (else KUBECONFIG,
HACLI_ETCD_*, the topology's `etcd`), the nodes over SSH as the topology's
`ssh` says. Exit 0 done, 1 denied or failed (restored), 2 error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hapy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("node")
    p.add_argument("-t", "--topology", required=True)
    p.add_argument("--journal", required=True, type=Path)
    p.add_argument("--policy", help="a built-in policy name or a policy file")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument("--etcd", action="append", help="an etcd client URL (repeatable)")
    p.add_argument("--etcd-pki", type=Path, help="etcd's CA and client pair (kubeadm layout)")
    a = p.parse_args(argv)
    try:
        r = hapy.disrupt(
            "reboot", a.node, a.topology, journal=a.journal, backend="live", policy=a.policy,
            resume=a.resume, kubeconfig=a.kubeconfig, etcd=a.etcd, etcd_pki=a.etcd_pki, deadline=10.0,
        )
    except hapy.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if r["result"] == "denied":
        print(f"DENIED {a.node}: " + "; ".join(r["reasons"]))
        return 1
    outcome = r["outcome"]["outcome"]
    print(f"{a.node}: {outcome}; lock {'released' if r['lockReleased'] else 'still held'}")
    return 0 if outcome == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
