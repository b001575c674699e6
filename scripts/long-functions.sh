#!/usr/bin/env bash
# Functions longer than a limit (100 lines by default), per crate, outside
# tests (issue 23). A brace-matching scan of `fn` items in crates/*/src:
# comments, strings and char literals are blanked first; `#[cfg(test)]` and
# `#[test]` items and tests/, benches/, examples/ directories are skipped. A
# function's length runs from its `fn` line to its closing brace; a nested
# fn is counted on its own and inside its parent.
#
#   scripts/long-functions.sh [--limit N] [--check] [CRATE...]
#
# Prints `crate path:line name lines` for each, then one count per crate.
# --check: exit 1 when any function is over the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=100 check=0 crates=()
while [ $# -gt 0 ]; do
  case "$1" in
    --limit) limit=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) crates+=("$1"); shift ;;
  esac
done
[ ${#crates[@]} -gt 0 ] || mapfile -t crates < <(ls crates)
exec python3 - "$limit" "$check" "${crates[@]}" <<'PY'
import os, re, sys

limit, check, crates = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]


def blank(text):
    """Comments, strings and char literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    keep = lambda s: "".join(c if c == "\n" else " " for c in s)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(keep(text[i:j])); i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j): depth += 1; j += 2
                elif text.startswith("*/", j): depth -= 1; j += 2
                else: j += 1
            out.append(keep(text[i:j])); i = j
        elif (m := re.match(r'b?r(#*)"', text[i:i + 260])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(keep(text[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(keep(text[i:j + 1])); i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])):
            out.append(keep(m.group(0))); i += m.end()
        else:
            out.append(c); i += 1
    return "".join(out)


def close(text, i):
    """Index just past the brace matching the `{` at i."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{": depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0: return j + 1
    return len(text)


def item_end(text, i):
    """End of the item starting at i: its `;` or its brace block."""
    for j in range(i, len(text)):
        if text[j] == ";": return j + 1
        if text[j] == "{": return close(text, j)
    return len(text)


def test_spans(text):
    spans = []
    for m in re.finditer(r"#\[\s*(cfg\s*\(\s*test\s*\)|test)\s*\]", text):
        spans.append((m.start(), item_end(text, m.end())))
    return spans


def functions(text):
    tests = test_spans(text)
    for m in re.finditer(r"\bfn\s+([A-Za-z_]\w*)", text):
        if any(a <= m.start() < b for a, b in tests): continue
        depth, j = 0, m.end()
        while j < len(text):  # the body's `{`, or `;` for a bodiless fn
            ch = text[j]
            if ch in "(<[": depth += 1
            elif ch in ")>]": depth -= 1
            elif ch == "-" and text[j + 1:j + 2] == ">": j += 1
            elif depth <= 0 and ch in "{;": break
            j += 1
        if j >= len(text) or text[j] == ";": continue
        first = text.count("\n", 0, m.start()) + 1
        last = text.count("\n", 0, close(text, j) - 1) + 1
        yield m.group(1), first, last - first + 1


found = 0
counts = []
for crate in crates:
    src = os.path.join("crates", crate, "src")
    if not os.path.isdir(src): continue
    n = 0
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in ("tests", "benches", "examples"))
        for f in sorted(files):
            if not f.endswith(".rs"): continue
            path = os.path.join(root, f)
            with open(path, encoding="utf-8") as fh:
                text = blank(fh.read())
            for name, line, length in functions(text):
                if length > limit:
                    print(f"{crate} {path}:{line} {name} {length}")
                    n += 1
    counts.append((crate, n))
    found += n
print(f"functions over {limit} lines, outside tests:")
for crate, n in counts:
    print(f"  {crate:10} {n}")
sys.exit(1 if check and found else 0)
PY
