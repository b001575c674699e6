#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh machine.
# Installs what it needs (idempotently), then: format check, clippy, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite needs, as "package:command-it-provides".
# etcd and kubectl run in the live lab (crates/testlab); protoc builds etcd-client.
DEBS=(etcd-server:etcd etcd-client:etcdctl kubernetes-client:kubectl protobuf-compiler:protoc)
missing=()
for entry in "${DEBS[@]}"; do
  pkg=${entry%%:*} cmd=${entry#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 2; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test" >&2
cargo test --workspace --locked
