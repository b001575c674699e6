#!/usr/bin/env bash
# Run the README's install commands into a temporary prefix, as a user
# would, and use what they installed (called by scripts/test.sh):
#   cargo install --locked --path crates/hacli --root PREFIX
#     (here with --debug and the workspace's target directory, so that it
#      reuses the test build instead of a release build of minutes)
#   pip install <the wheel scripts/wheel.sh builds>  (into a fresh venv)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
echo "==> install: cargo install --locked --path crates/hacli --root $prefix (--debug)" >&2
CARGO_TARGET_DIR="$PWD/target" cargo install -q --locked --debug --path crates/hacli --root "$prefix"
"$prefix/bin/hacli" --version
"$prefix/bin/hacli" check reboot k8s-master-2 -t examples/topology/ha.yaml \
  -s examples/state/ha-healthy.yaml --at 2026-05-21T12:00:00Z >/dev/null
echo "installed hacli answers: reboot k8s-master-2 allowed (exit 0)" >&2

wheel=$(ls target/hapy-wheels/hapy-*-cp39-abi3-*.whl)
echo "==> install: pip install $(basename "$wheel") (a fresh venv)" >&2
${PYTHON:-python3} -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --disable-pip-version-check --no-deps "$wheel"
(cd "$prefix" && "$prefix/venv/bin/python" - <<'PY'
import hapy
assert hapy.quorum(3) == 2, hapy.quorum(3)
print("installed hapy", hapy.__name__, "quorum(3) =", hapy.quorum(3))
PY
)
