#!/usr/bin/env bash
# Fuzz every parser of outside input (the cargo fuzz targets in fuzz/) for N
# seconds each, or only the targets named.
#
#   scripts/fuzz.sh [-t SECONDS] [TARGET...]      (default 60 s, every target)
#   scripts/fuzz.sh -m [TARGET...]                 minimise the corpora, then stop
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Targets are built without a sanitizer (the workspace forbids unsafe code)
# and with debug assertions, so integer overflow panics as in a debug build.
# New inputs go to fuzz/corpus/TARGET/, crashes to fuzz/artifacts/TARGET/.
# A crash is fixed in the parser, then its input is kept in
# fuzz/regressions/TARGET/, which `cargo test --workspace` replays (with the
# corpus) on stable. Before committing a grown corpus, minimise it (-m):
# `cargo fuzz cmin` keeps the inputs that reach every coverage feature; when
# that still leaves more than 300 files, a set-cover merge on edges alone
# (libFuzzer -use_counters=0 -set_cover_merge=1) keeps the corpus small, and
# over 1 MB, the files that add the most edges per byte, up to 1 MB (python3).
#
# Reproduce one input: (cd fuzz && cargo +nightly fuzz run -s none -a TARGET FILE)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=60 minimise=
if [ "${1:-}" = "-t" ]; then secs=$2; shift 2; fi
if [ "${1:-}" = "-m" ]; then minimise=1; shift; fi
command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly' ||
  { echo "the nightly toolchain is needed: rustup toolchain install nightly" >&2; exit 2; }
cargo +nightly fuzz --version >/dev/null 2>&1 ||
  { echo "cargo-fuzz is needed: cargo install cargo-fuzz --locked" >&2; exit 2; }

if [ $# -eq 0 ]; then mapfile -t targets < <(cargo +nightly fuzz list); else targets=("$@"); fi

if [ -n "$minimise" ]; then
  bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"
  for t in "${targets[@]}"; do
    nice -n 19 cargo +nightly fuzz cmin -s none -a "$t" >/dev/null 2>&1 ||
      { echo "$t: cmin failed" >&2; exit 1; }
    if [ "$(ls "corpus/$t" | wc -l)" -gt 300 ]; then
      tmp=$(mktemp -d)
      nice -n 19 "$bin/$t" -use_counters=0 -set_cover_merge=1 "$tmp" "corpus/$t" >/dev/null 2>&1 ||
        { echo "$t: set-cover merge failed" >&2; rm -rf "$tmp"; exit 1; }
      rm -rf "corpus/$t" && mv "$tmp" "corpus/$t"
    fi
    if [ "$(cat "corpus/$t"/* | wc -c)" -gt 1000000 ]; then
      # Still over 1 MB (the plan's inputs are large): keep, greedily, the
      # files that add the most uncovered edges per byte, up to 1 MB.
      tmp=$(mktemp -d)
      nice -n 19 "$bin/$t" -use_counters=0 -merge=1 -merge_control_file="$tmp/ctl" "$tmp" "corpus/$t" >/dev/null 2>&1 ||
        { echo "$t: merge failed" >&2; rm -rf "$tmp"; exit 1; }
      python3 - "$tmp/ctl" "corpus/$t" <<'PY'
import os, sys
lines = open(sys.argv[1]).read().split("\n")
n = int(lines[0]); files = lines[2:2 + n]
cov = {int(p[1]): set(map(int, p[2:])) for p in (l.split() for l in lines[2 + n:]) if p and p[0] == "COV"}
size = {i: os.path.getsize(f) for i, f in enumerate(files)}
keep, got, used = set(), set(), 0
while True:
    best = max((i for i in cov if i not in keep and cov[i] - got and used + size[i] <= 1_000_000),
               key=lambda i: len(cov[i] - got) / (size[i] + 200), default=None)
    if best is None:
        break
    keep.add(best); got |= cov[best]; used += size[best]
for i, f in enumerate(files):
    if i not in keep:
        os.remove(f)
print(f"{len(keep)} files keep {len(got)} of {len(set().union(*cov.values()))} edges", file=sys.stderr)
PY
      rm -rf "$tmp"
    fi
    echo "$t: $(ls "corpus/$t" | wc -l) files, $(cat "corpus/$t"/* | wc -c) bytes" >&2
  done
  exit 0
fi

failed=()
for t in "${targets[@]}"; do
  echo "==> fuzz $t for ${secs}s" >&2
  mkdir -p "corpus/$t"
  # -print_final_stats: the number of executions run (stat::number_of_executed_units).
  if ! nice -n 19 cargo +nightly fuzz run -s none -a "$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "no crash; minimise the grown corpora before committing: scripts/fuzz.sh -m ${targets[*]}" >&2
