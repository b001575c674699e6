#!/usr/bin/env bash
# Where one live gate's CPU goes, against the lab: hacli's own (perf stat
# when installed, else the shell's `times`), and each lab server's from
# /proc/PID/stat over N gates, idle time subtracted.
#
#   cargo build --release -p hacli -p testlab --example lab
#   target/release/examples/lab 600 > /tmp/lab.env &   # wait until it prints
#   scripts/gate-cpu.sh /tmp/lab.env m1 [N=100]
set -euo pipefail
env_file=${1:?usage: gate-cpu.sh LAB_ENV_FILE NODE [N]}
node=${2:?usage: gate-cpu.sh LAB_ENV_FILE NODE [N]}
n=${3:-100}
cd "$(dirname "$0")/.."
hacli=target/release/hacli
set -a; . "$env_file"; set +a
dir=$(dirname "$HACLI_TOPOLOGY")

declare -A pids
for p in $(pgrep -f "etcd --name=.*--data-dir=$dir/"); do
  pids["etcd $(tr '\0' ' ' < /proc/$p/cmdline | sed -n 's/.*--name=\([^ ]*\).*/\1/p')"]=$p
done
p=$(pgrep -f "haproxy -db -f $dir/haproxy.cfg" | tail -n 1) && pids[haproxy]=$p
p=$(pgrep -f "examples/lab" | head -n 1) && pids["lab (API stand-in)"]=$p
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
snapshot() { for k in "${!pids[@]}"; do echo "$k=$(ticks "${pids[$k]}")"; done; }

declare -A a b idle
while IFS== read -r k v; do a[$k]=$v; done < <(snapshot)
start=$(date +%s%N)
for _ in $(seq "$n"); do "$hacli" gate reboot "$node" > /dev/null || true; done
took=$(( $(date +%s%N) - start ))
while IFS== read -r k v; do b[$k]=$v; done < <(snapshot)
# The same span idle, to subtract background work (health checks, raft ticks).
sleep "$(awk -v t="$took" 'BEGIN { printf "%.3f", t / 1e9 }')"
while IFS== read -r k v; do idle[$k]=$(( v - b[$k] )); done < <(snapshot)

echo "$n gates in $(( took / 1000000 )) ms ($(awk -v t="$took" -v n="$n" 'BEGIN { printf "%.1f", t / 1e6 / n }') ms each)"
for k in "${!pids[@]}"; do
  awk -v k="$k" -v d=$(( b[$k] - a[$k] - idle[$k] )) -v hz="$hz" -v n="$n" \
    'BEGIN { printf "  %-22s %5.2f ms CPU per gate\n", k, d * 1000 / hz / n }'
done | sort
if command -v perf > /dev/null; then
  perf stat -r 20 "$hacli" gate reboot "$node" 2>&1 > /dev/null | grep -E 'task-clock' \
    | awk '{ printf "  %-22s %5.2f ms CPU per gate (perf stat -r 20)\n", "hacli", $1 }'
fi
