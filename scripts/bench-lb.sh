#!/usr/bin/env bash
# Does changing the load balancer drop API connections? Constant TLS load
# through the lab's VIP while hacli adds and removes a server and resets the
# pool, over each transport (crates/pfsense/benches/lb_reload.rs). Needs root
# (lab hosts in network namespaces) and the packages scripts/test.sh installs.
# Usage: scripts/bench-lb.sh [--rate N] [--seconds S]   (200/s for 20 s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked --profile lab-bench -p pfsense --bench lb_reload -- "$@"
