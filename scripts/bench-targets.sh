#!/usr/bin/env bash
# The speed targets the lab tests measure, printed against their targets.
# The tests keep only bounds a real regression breaks (a loaded 2-core
# machine must not fail them); the targets themselves are benchmark
# figures: this script runs those tests one at a time and prints every
# `target:` line they print (crates/testlab/src/targets.rs).
#
#   scripts/bench-targets.sh [--check]    (--check: exit 1 if a target is missed)
#
# Needs root (lab hosts in network namespaces) and the packages
# scripts/test.sh installs. About 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
check=
[ "${1:-}" = "--check" ] && check=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {  # crate test-file test-name
  echo "==> cargo test -p $1 --test $2 -- --exact $3" >&2
  cargo test --locked -q -p "$1" --test "$2" -- --exact "$3" --nocapture --test-threads=1 2>&1 |
    grep '^target: ' | tee -a "$out" || true
}
run testlab proxmox_backend a_finished_task_is_noticed_at_the_capped_poll_interval
run hacli drill unplanned_power_off_is_measured_within_the_bound
run pfsense lb_lab a_powered_off_master_costs_latency_not_failures
run hacli live twenty_concurrent_locking_gates_allow_exactly_one
run hacli live a_dead_holders_lock_expires_after_its_ttl
n=$(grep -c . "$out" || true)
missed=$(grep -c ': MISSED$' "$out" || true)
echo "==> $n figures, $missed missed" >&2
[ "$n" -ge 6 ] || { echo "expected at least 6 figures: a test failed or printed none" >&2; exit 1; }
[ -z "$check" ] || [ "$missed" -eq 0 ]
