"""The house tooling passes on the sources: ruff's lint rules and format, and mypy over ``src``.

The rules live in pyproject.toml (``[tool.ruff*]``, ``[tool.mypy]``); the ``test`` extra installs
both tools. A failure shows the tool's own report.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What ruff checks and formats (docs/ is linted only: its notebooks and conf.py keep their layout).
LINTED = ["src", "tests", "benchmarks", "docs"]
FORMATTED = ["src", "tests", "benchmarks"]


def _module_or_program(name: str) -> list[str]:
    """``python -m name`` when installed in this environment, else ``name`` on PATH; skip if neither."""
    if importlib.util.find_spec(name) is not None:
        return [sys.executable, "-m", name]
    program = shutil.which(name)
    if program is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' installs it.")
    return [program]


def _run(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(result.args)} exited with {result.returncode}:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def ruff() -> list[str]:
    return _module_or_program("ruff")


def test_ruff_check(ruff):
    result = _run([*ruff, "check", *LINTED])
    assert result.returncode == 0, _report(result)


def test_ruff_format(ruff):
    result = _run([*ruff, "format", "--check", *FORMATTED])
    assert result.returncode == 0, _report(result)


def test_ruff_rules_configured():
    """The docstring and import rules are on, with the numpy convention and the unpickling bans."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert {"D", "TID"} <= set(lint["select"])
    assert lint["pydocstyle"]["convention"] == "numpy"
    banned = lint["flake8-tidy-imports"]["banned-api"]
    for name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "torch.load"):
        assert name in banned, f"{name} is not banned"
    assert "read_trusted_pickle" in banned["pickle.load"]["msg"]


@pytest.mark.slow
def test_mypy(tmp_path_factory):
    mypy = _module_or_program("mypy")
    # The cache outlives this session (pytest keeps its temporary root between runs) and stays
    # out of the repository: a warm run takes seconds, a cold one about a minute.
    cache = tmp_path_factory.getbasetemp().parent / "scelmo-mypy-cache"
    result = _run([*mypy, "--cache-dir", str(cache)])
    assert result.returncode == 0, _report(result)
    assert "Success" in result.stdout, _report(result)


def test_package_is_typed():
    """``py.typed`` marks the package as typed (PEP 561); the wheel takes every file of the package."""
    assert (ROOT / "src" / "scelmo" / "py.typed").is_file()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["src/scelmo"]
