#!/usr/bin/env python3
"""Offline verdict call overhead from Python, beside the Rust figure.

    python crates/hapy/benches/verdict.py            # after installing a release wheel
                                                     # (maturin build --release; the test
                                                     # command's wheel is a dev build)
    python crates/hapy/benches/verdict.py --check    # exit 1 if over the 20 us target

The Rust figure is criterion's mean for `verdict/example/reboot k8s-master-2`
(`cargo bench -p hacore --bench verdict`), read from target/criterion when
that has been run. Both evaluate `reboot k8s-master-2` on the bundled HA
example with topology, state and policy loaded once; the Python figure adds
argument conversion, the GIL release around the rules, and the Verdict object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit
from pathlib import Path

import hapy

REPO = Path(__file__).resolve().parents[3]
TOPOLOGY = REPO / "examples" / "topology" / "ha.yaml"
STATE = REPO / "examples" / "state" / "ha-healthy.yaml"
# When STATE was observed: verdicts are as of now unless `at` says otherwise.
AT = "2026-05-21T12:00:00Z"
TARGET_US = 20.0


def per_call_us(stmt: str, env: dict[str, object], number: int, repeat: int) -> float:
    """Best of `repeat` runs of `number` calls, in microseconds per call."""
    times = timeit.repeat(stmt, globals=env, number=number, repeat=repeat)
    return min(times) / number * 1e6


def rust_figure_us() -> float | None:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    f = target / "criterion" / "verdict_example_reboot k8s-master-2" / "new" / "estimates.json"
    try:
        return float(json.loads(f.read_text())["mean"]["point_estimate"]) / 1000.0
    except (OSError, KeyError, ValueError):
        return None


def main() -> int:
    p = argparse.ArgumentParser(description="hapy offline verdict overhead")
    p.add_argument("--number", type=int, default=20000, help="calls per run")
    p.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    p.add_argument("--check", action="store_true", help=f"exit 1 if over {TARGET_US} us per verdict")
    a = p.parse_args()

    topo = hapy.Topology.from_file(TOPOLOGY)
    state = hapy.State.from_file(STATE, topo)
    reboot = hapy.Policy.builtin("reboot")
    assert hapy.evaluate("reboot", "k8s-master-2", topo, state, policy=reboot, at=AT).allowed
    env: dict[str, object] = {
        "hapy": hapy,
        "t": topo,
        "s": state,
        "p": reboot,
        "T": str(TOPOLOGY),
        "S": str(STATE),
        "A": AT,
    }
    n, r = a.number, a.repeat
    cases = [
        ("evaluate, loaded objects + Policy (= the Rust case)",
         'hapy.evaluate("reboot", "k8s-master-2", t, s, policy=p, at=A)', n),
        ("evaluate, policy=None (the cached built-in)",
         'hapy.evaluate("reboot", "k8s-master-2", t, s, at=A)', n),
        ("evaluate upgrade k8s-master-2",
         'hapy.evaluate("upgrade", "k8s-master-2", t, s, at=A)', n),
        ("evaluate + .decision + .findings",
         'v = hapy.evaluate("reboot", "k8s-master-2", t, s, policy=p, at=A); v.decision; v.findings', n),
        ("evaluate + .to_dict()",
         'hapy.evaluate("reboot", "k8s-master-2", t, s, policy=p, at=A).to_dict()', max(n // 10, 1)),
        ("evaluate from file paths (parse both files per call)",
         'hapy.evaluate("reboot", "k8s-master-2", T, S, at=A)', max(n // 100, 1)),
    ]
    results = []
    print(f"hapy {hapy.__version__}, Python {sys.version.split()[0]}, best of {r}")
    for label, stmt, number in cases:
        us = per_call_us(stmt, env, number, r)
        results.append(us)
        print(f"  {us:9.2f} us  {label}")
    rust = rust_figure_us()
    py = results[0]
    if rust is None:
        print("  Rust figure: not found (run `cargo bench -p hacore --bench verdict`)")
    else:
        print(f"  {rust:9.2f} us  Rust, criterion mean (cargo bench -p hacore --bench verdict)")
        print(f"  {py - rust:9.2f} us  Python call overhead per verdict ({py / rust:.1f}x)")
    ok = py < TARGET_US
    print(f"target: < {TARGET_US:.0f} us per offline verdict from Python: {'met' if ok else 'MISSED'}")
    return 0 if ok or not a.check else 1


if __name__ == "__main__":
    sys.exit(main())
