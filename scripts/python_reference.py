"""Write docs/python-reference.md from the installed ``hapy`` module.

Every public name of ``hapy.__all__``: its signature (as ``inspect`` and
the native module's ``__text_signature__`` give it) and its docstring, the
one the bindings carry, so the reference never drifts from the module;
crates/hapy/tests/test_reference.py fails when the committed file differs.

    target/hapy-venv/bin/python scripts/python_reference.py > docs/python-reference.md
"""

from __future__ import annotations

import inspect
import sys
import textwrap

import hapy


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or "(no docstring)"
    return textwrap.dedent(doc).strip()


def _section(name: str, obj: object) -> list[str]:
    out: list[str] = []
    if inspect.isclass(obj):
        out.append(f"## class `hapy.{name}`\n")
        out.append(_doc(obj) + "\n")
        members = [
            (m, v)
            for m, v in sorted(vars(obj).items())
            if not m.startswith("_") and (callable(v) or isinstance(v, (property, classmethod, staticmethod)))
        ]
        for m, v in members:
            target = v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
            sig = "" if isinstance(v, property) else _signature(getattr(obj, m))
            out.append(f"### `{name}.{m}{sig}`\n")
            out.append(_doc(target) + "\n")
    elif callable(obj):
        out.append(f"## `hapy.{name}{_signature(obj)}`\n")
        out.append(_doc(obj) + "\n")
    return out


def render() -> str:
    lines = [
        "# hapy reference\n",
        "Generated from the installed module by `scripts/python_reference.py`",
        "(the docstrings the bindings carry; the type stubs in",
        "`crates/hapy/python/hapy/_hapy.pyi` give the full types). The guide is",
        "[python.md](python.md).\n",
    ]
    names = [n for n in hapy.__all__ if not n.startswith("_")]
    for name in names:
        lines.extend(_section(name, getattr(hapy, name)))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
