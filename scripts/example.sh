#!/usr/bin/env bash
# The main job on the bundled example cluster: is it safe to reboot
# k8s-master-2 in the three-master home-lab? Exit 0 allow, 1 deny, 3 unknown.
# Installs protoc (Debian protobuf-compiler) first if missing: hacli's live
# backend builds etcd-client, which needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-debs.sh
ensure_debs protobuf-compiler:protoc
exec cargo run -q -p hacli -- check reboot k8s-master-2 \
  --topology examples/topology/ha.yaml --state examples/state/ha-healthy.yaml "$@"
