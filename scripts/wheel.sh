#!/usr/bin/env bash
# Build hapy's wheel: one cp39-abi3 wheel for CPython 3.9 and later.
#
#   scripts/wheel.sh                  # release wheel into target/wheels/
#   scripts/wheel.sh --dev OUT_DIR    # the test suite's (dev profile) wheel
#
# Then: pip install target/wheels/hapy-*.whl
# maturin comes from a venv under target/ (created from PyPI if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release out=target/wheels
if [ "${1:-}" = "--dev" ]; then profile=dev out=${2:-target/hapy-wheels}; fi
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "$PY not found: install Python 3 with pip and venv" >&2; exit 2; }
VENV=${HAPY_VENV:-target/hapy-venv}
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
"$VENV/bin/python" -m pip install -q --disable-pip-version-check 'maturin>=1.9.4,<2'
rm -rf "$out"
"$VENV/bin/maturin" build --profile "$profile" --locked -m crates/hapy/Cargo.toml \
  --interpreter "$VENV/bin/python" --out "$out" >&2
wheel=$(ls "$out"/hapy-*-cp39-abi3-*.whl 2>/dev/null) || { echo "expected one cp39-abi3 wheel in $out: $(ls "$out")" >&2; exit 1; }
echo "$wheel"
