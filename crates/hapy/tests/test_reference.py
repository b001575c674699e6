"""docs/python-reference.md is what scripts/python_reference.py renders
from the installed module: a function added, renamed or documented
differently fails here until the reference is regenerated."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_the_python_reference_in_docs_is_the_generated_one() -> None:
    spec = importlib.util.spec_from_file_location("python_reference", ROOT / "scripts" / "python_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated: str = module.render()
    for name in ("evaluate", "gate", "disrupt", "snapshot", "recover", "remediate"):
        assert f"`hapy.{name}(" in generated, f"hapy.{name} missing from the reference"
    committed = (ROOT / "docs" / "python-reference.md").read_text()
    assert committed == generated, (
        "docs/python-reference.md is not what scripts/python_reference.py renders now: regenerate it with\n"
        "  target/hapy-venv/bin/python scripts/python_reference.py > docs/python-reference.md"
    )
