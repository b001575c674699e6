#!/usr/bin/env bash
# The main job on the bundled example cluster: is it safe to reboot
# k8s-master-2 in the three-master home-lab? Exit 0 allow, 1 deny, 3 unknown.
# The example state was observed at 2026-05-21T12:00:00Z: `check` judges a
# state as of now unless --at says otherwise (a state older than the policy's
# 5 minutes is unknown), so this replays it as of that time. Against a real
# cluster, observe right before asking: `hacli observe -t TOPOLOGY -O
# state.json && hacli check reboot NODE -t TOPOLOGY -s state.json`, or ask the
# live gate: `hacli gate reboot NODE -t TOPOLOGY`.
# Installs protoc (Debian protobuf-compiler) first if missing: hacli's live
# backend builds etcd-client, which needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-debs.sh
ensure_debs protobuf-compiler:protoc
exec cargo run -q -p hacli -- check reboot k8s-master-2 \
  --topology examples/topology/ha.yaml --state examples/state/ha-healthy.yaml \
  --at 2026-05-21T12:00:00Z "$@"
