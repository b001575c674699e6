#!/usr/bin/env bash
# The sentinel DaemonSet's cost to the cluster (issue 27): 30, 100 and 300
# `hacli sentinel` processes against the lab's API stand-in and real etcd
# (loopback only), 1% of the nodes pending, now and before (the old
# every-cycle observation), printing requests and bytes per second at the
# API and at etcd, per cycle, and the fleet's memory. Takes about 8 minutes: not part of
# scripts/test.sh. Tunables: HACLI_FLEET_SIZES (30,100,300),
# HACLI_FLEET_PERIOD (30 s), HACLI_FLEET_WINDOW (30 s), HACLI_FLEET_PODS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-debs.sh
ensure_debs etcd-server:etcd haproxy:haproxy protobuf-compiler:protoc curl:curl
# The dev profile by default: the figures are requests, bytes and memory, and a
# release build (fat LTO) takes long on a small machine; HACLI_FLEET_PROFILE=release for one.
exec cargo bench --locked --profile "${HACLI_FLEET_PROFILE:-dev}" -p hacli --bench fleet
