"""Shared fixtures: the repository's examples and the `hacli` binary built
from the same sources, so verdicts can be compared with the CLI's JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hapy

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
HA = EXAMPLES / "topology" / "ha.yaml"
SINGLE = EXAMPLES / "topology" / "single-master.yaml"
KURED = EXAMPLES / "policy" / "kured-gate.yaml"
# When the bundled example states were observed. A verdict is as of now
# unless `at` says otherwise, and these states are stale now: tests replay
# them as of this time, explicitly.
AT = "2026-05-21T12:00:00Z"


def _skipped_list() -> Path:
    return Path(os.environ.get("HACLI_SKIPPED_TESTS") or REPO / "target" / "skipped-tests.txt")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Skips are seen, as in the Rust tests (crates/testlab/src/skip.rs):
    under HACLI_REQUIRE_LABS=1 a skip fails the test naming why; otherwise
    it is listed in target/skipped-tests.txt, which scripts/test.sh prints."""
    outcome: Any = yield
    rep: pytest.TestReport = outcome.get_result()
    if not rep.skipped or hasattr(rep, "wasxfail"):
        return
    lr = rep.longrepr
    why = str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    why = why.removeprefix("Skipped: ")
    if os.environ.get("HACLI_REQUIRE_LABS") == "1":
        rep.outcome = "failed"
        rep.longrepr = f"{item.nodeid}: would be skipped, but HACLI_REQUIRE_LABS=1 requires it to run: {why}"
        return
    try:
        with _skipped_list().open("a") as f:
            f.write(f"skipped: {item.nodeid}: {why}\n")
    except OSError as e:
        print(f"(could not list the skip in {_skipped_list()}: {e})")


def state_path(name: str) -> Path:
    return EXAMPLES / "state" / f"{name}.yaml"


class Cli:
    """Runs `hacli`; `json()` returns (the document's body, raw stdout, exit code)."""

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def run(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *map(str, args)], capture_output=True, text=True, timeout=60
        )

    def json(self, *args: str | os.PathLike[str]) -> tuple[Any, str, int]:
        p = self.run(*args, "-o", "json")
        assert p.returncode != 2, p.stderr
        doc = json.loads(p.stdout)
        # Every document hacli prints is `apiVersion: hacli/v1` with a kind;
        # the body is what the Python objects' dicts hold.
        assert doc.pop("apiVersion") == "hacli/v1", p.stdout
        assert doc.pop("kind"), p.stdout
        return doc, p.stdout, p.returncode


@pytest.fixture(scope="session")
def cli() -> Cli:
    """`hacli` from this workspace: $HACLI if set, else built with cargo."""
    exe = os.environ.get("HACLI")
    if exe:
        return Cli(exe)
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no cargo on PATH and HACLI not set: cannot build hacli to compare with")
    subprocess.run([cargo, "build", "-q", "-p", "hacli"], cwd=REPO, check=True, timeout=1800)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return Cli(str(target / "debug" / "hacli"))


@pytest.fixture(scope="session")
def ha() -> hapy.Topology:
    return hapy.Topology.from_file(HA)


@pytest.fixture(scope="session")
def healthy(ha: hapy.Topology) -> hapy.State:
    return hapy.State.from_file(state_path("ha-healthy"), ha)
