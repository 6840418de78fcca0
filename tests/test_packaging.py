"""Release readiness: the sdist and wheel, the conda-forge recipe, the scverse entry, the docs.

The wheel is built once per session (``python -m build``: sdist first, then the wheel from the
sdist, so a file missing from the sdist breaks the wheel too), checked with ``twine check
--strict``, and installed into a fresh virtual environment with its base dependencies only.
The documentation is built as ``scripts/docs.sh`` builds it: tutorials executed, warnings are
errors.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "scelmo"
RECIPE = ROOT / "recipe" / "recipe.yaml"
SCVERSE_META = ROOT / "scverse" / "meta.yaml"

#: PyPI names whose conda-forge package is called differently (canonical PyPI name -> conda name).
#: A dependency not listed here has the same name on both.
CONDA_NAMES = {
    "torch": "pytorch",
    "igraph": "python-igraph",
    "dask": "dask-core",
    "tables": "pytables",
    "matplotlib": "matplotlib-base",
}

#: Modules a base install must not pull in (the extras' heavy dependencies).
HEAVY = ("torch", "transformers", "sentence_transformers", "openai", "mygene", "scvi")


# -- helpers ----------------------------------------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _version() -> str:
    """``__version__`` as hatch reads it: the one place the version is written."""
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', (PACKAGE / "__init__.py").read_text(), re.M)
    assert match, "src/scelmo/__init__.py defines no __version__"
    return match.group(1)


def _recipe() -> dict:
    """The recipe with ``${{ var }}`` replaced by its ``context`` values (enough for these checks)."""
    raw = yaml.safe_load(RECIPE.read_text())
    context = {key: str(value) for key, value in raw["context"].items()}

    def render(value):
        if isinstance(value, str):
            return re.sub(r"\$\{\{\s*(\w+)\s*\}\}", lambda m: context.get(m.group(1), m.group(0)), value)
        if isinstance(value, list):
            return [render(item) for item in value]
        if isinstance(value, dict):
            return {key: render(item) for key, item in value.items()}
        return value

    return render(raw)


def _conda_spec(entry: str) -> tuple[str, SpecifierSet]:
    name, _, spec = entry.strip().partition(" ")
    return name, SpecifierSet(spec.replace(" ", ""))


def _expected_conda_run() -> dict[str, SpecifierSet]:
    """pyproject's ``[project] dependencies`` under their conda-forge names."""
    expected: dict[str, SpecifierSet] = {}
    for text in _pyproject()["project"]["dependencies"]:
        req = Requirement(text)
        assert req.marker is None, f"{text}: a marker needs a matching selector in the recipe"
        name = CONDA_NAMES.get(canonicalize_name(req.name), canonicalize_name(req.name))
        expected[name] = req.specifier
    return expected


def _run(cmd: list[str], *, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


# -- recipe and metadata consistency (fast) ---------------------------------------------------
def test_recipe_run_requirements_match_pyproject():
    recipe = _recipe()
    run = dict(_conda_spec(entry) for entry in recipe["requirements"]["run"])
    python = run.pop("python")
    assert python == SpecifierSet(_pyproject()["project"]["requires-python"]), (
        "recipe: `python >=${{ python_min }}` must match requires-python"
    )
    expected = _expected_conda_run()
    assert set(run) == set(expected), (
        f"recipe run requirements differ from pyproject dependencies: missing {sorted(set(expected) - set(run))}, "
        f"extra {sorted(set(run) - set(expected))} (names mapped with CONDA_NAMES)"
    )
    for name, spec in expected.items():
        assert run[name] == spec, f"recipe pins {name} {run[name]}, pyproject {spec}"


def test_recipe_build_and_tests_match_pyproject():
    recipe, project = _recipe(), _pyproject()
    assert recipe["schema_version"] == 1
    assert recipe["context"]["name"] == project["project"]["name"]
    assert recipe["context"]["version"] == _version(), "recipe/recipe.yaml `context.version` != __version__"
    assert recipe["build"]["noarch"] == "python"
    assert recipe["about"]["license"] == project["project"]["license"]
    assert (ROOT / recipe["about"]["license_file"]).is_file()
    assert re.fullmatch(r"[0-9a-f]{64}", str(recipe["source"]["sha256"]))

    # python_min is the floor of requires-python.
    assert project["project"]["requires-python"] == f">={recipe['context']['python_min']}"
    # The build backend is in the host environment (pip builds without isolation there).
    host = {entry.split()[0] for entry in recipe["requirements"]["host"]}
    backends = {canonicalize_name(Requirement(r).name) for r in project["build-system"]["requires"]}
    assert backends | {"python", "pip"} <= host

    # Entry points: the same console scripts as [project.scripts], and each one run by the tests.
    scripts = project["project"]["scripts"]
    assert recipe["build"]["python"]["entry_points"] == [
        f"{name} = {target}" for name, target in scripts.items()
    ]
    test_commands = [cmd for test in recipe["tests"] for cmd in test.get("script", [])]
    for name in scripts:
        assert f"{name} --help" in test_commands
    imports = [mod for test in recipe["tests"] for mod in test.get("python", {}).get("imports", [])]
    assert "scelmo" in imports


def test_recipe_renders_with_rattler_build():
    """rattler-build itself parses the recipe (it rejects unknown keys) and renders one variant."""
    import rattler_build

    variants = rattler_build.Stage0Recipe.from_file(RECIPE).render()
    assert len(variants) == 1
    rendered = variants[0].recipe.to_dict()
    assert rendered["package"] == {"name": "scelmo", "version": _version()}
    assert rendered["build"]["noarch"] == "python"
    # The same run requirements as the plain YAML reading the other tests use.
    assert rendered["requirements"]["run"] == _recipe()["requirements"]["run"]


def test_version_written_in_one_place():
    project = _pyproject()
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/scelmo/__init__.py"
    # No other module assigns a version, and the docs read it from the installed package.
    assigned = [p for p in PACKAGE.rglob("*.py") if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert assigned == [PACKAGE / "__init__.py"]
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert not re.search(r"^(release|version)\s*=\s*['\"]", conf, re.M), "docs/conf.py hard-codes the version"
    # The files that must state it (recipe, scverse entry) state the same one.
    assert str(yaml.safe_load(SCVERSE_META.read_text())["version"]) == _version()


def test_scverse_entry_is_complete():
    meta = yaml.safe_load(SCVERSE_META.read_text())
    project = _pyproject()["project"]
    required = ("name", "description", "project_home", "documentation_home", "install", "license")
    required += ("tags", "version", "category", "contact")
    assert not [key for key in required if not meta.get(key)]
    assert meta["name"] == project["name"]
    assert meta["license"] == project["license"]
    assert meta["install"]["pypi"] == project["name"]
    assert re.fullmatch(r".+::.+", meta["install"]["conda"])
    urls = project["urls"]
    assert meta["project_home"] == urls["Source"]
    assert meta["documentation_home"] == urls["Documentation"]


def test_readme_renders_on_pypi():
    """PyPI shows README.md: markdown, and no relative links or images (they break there)."""
    readme = (ROOT / "README.md").read_text()
    project = _pyproject()["project"]
    assert project["readme"] == "README.md"
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)", readme) + re.findall(
        r"^\[[^\]]+\]:\s*(\S+)", readme, re.M
    )
    targets += re.findall(r"<img[^>]+src=[\"']([^\"']+)", readme)
    relative = [t for t in targets if not re.match(r"(https?:|mailto:|#)", t)]
    assert not relative, f"README.md has relative links that break on PyPI: {relative}"


# -- built distributions ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` of the working tree: {'sdist': ..., 'wheel': ...}."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=600)
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert [len(sdists), len(wheels)] == [1, 1], sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_twine_check_strict(dists):
    result = _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists["sdist"]), str(dists["wheel"])]
    )
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_contents(dists):
    version = _version()
    assert dists["wheel"].name == f"scelmo-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"scelmo-{version}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = configparser.ConfigParser()
        entry_points.read_string(wheel.read(f"{info}/entry_points.txt").decode())

    modules = {
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert not modules - names, f"modules missing from the wheel: {sorted(modules - names)}"
    assert "scelmo/datasets/registry.toml" in names
    assert "scelmo/py.typed" in names  # type checkers read the package's annotations
    assert f"{info}/licenses/LICENSE" in names
    assert not [
        n for n in names if n.startswith(("tests/", "docs/", "src/")) or n.endswith((".pyc", ".h5ad"))
    ]

    scripts = _pyproject()["project"]["scripts"]
    assert dict(entry_points["console_scripts"]) == scripts

    assert metadata["Version"] == version
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata["License-Expression"] == "BSD-3-Clause"
    base = {str(Requirement(r)) for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    assert base == {str(Requirement(r)) for r in _pyproject()["project"]["dependencies"]}


def test_sdist_contents(dists):
    root = dists["sdist"].name.removesuffix(".tar.gz")
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.removeprefix(f"{root}/") for name in sdist.getnames()}
    for needed in (
        "PKG-INFO",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "src/scelmo/__init__.py",
        "src/scelmo/datasets/registry.toml",
        "recipe/recipe.yaml",
        "tests/test_packaging.py",
        "docs/conf.py",
    ):
        assert needed in names, f"{needed} missing from the sdist"
    unwanted = re.compile(
        r"(^|/)(\.venv|\.git|__pycache__|\.pytest_cache|\.ruff_cache|\.ipynb_checkpoints|dist|build)/"
        r"|^docs/(_build|generated|jupyter_execute)/|\.(pyc|h5ad)$"
    )
    assert not sorted(filter(unwanted.search, names))


@pytest.mark.slow
def test_wheel_installs_in_fresh_venv(dists, tmp_path):
    """pip install the wheel (base dependencies only) into a new venv; import it and run the CLI.

    About a minute with a warm pip cache (scanpy's dependencies, numba, scikit-learn, ..., are
    the bulk of it; no torch), most of it in pip's download and unpacking.
    """
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    try:
        _check_fresh_install(venv, dists["wheel"], tmp_path)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 0.7 GB


def _check_fresh_install(venv: Path, wheel: Path, cwd: Path) -> None:
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    # --no-compile: byte-compiling scanpy's dependency tree would take longer than installing it.
    install = [str(python), "-m", "pip", "install", "--prefer-binary", "--no-compile", str(wheel)]
    _run(install, timeout=900, env=env)

    code = (
        "import importlib.util, scelmo; print(scelmo.__version__); print(scelmo.__file__); "
        f"print(','.join(m for m in {HEAVY!r} if importlib.util.find_spec(m)))"
    )
    version, location, heavy = _run([str(python), "-c", code], env=env, cwd=cwd).stdout.splitlines()
    assert version == _version()
    assert Path(location).is_relative_to(venv), location
    assert heavy == "", f"the base install pulled in {heavy}"

    usage = _run([str(bindir / "scelmo"), "--help"], env=env, cwd=cwd, timeout=120).stdout
    assert "usage" in usage.lower()
    assert "info" in usage
    info = _run([str(bindir / "scelmo"), "info"], env=env, cwd=cwd, timeout=120).stdout
    assert _version() in info


@pytest.mark.slow
def test_docs_build_without_warnings():
    """``sphinx-build -W --keep-going`` with the tutorials executed, as ``scripts/docs.sh`` runs it.

    The output goes to docs/_build/html, so the executed tutorials are cached between runs
    (jupyter-cache): a clean checkout executes all of them (about 7 minutes on 2 CPU cores), a
    rerun only the changed ones. The tutorials need the doc extra (part of the test extra).
    """
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b:", line)]
    problems = [line for line in problems if "[IPKernelApp]" not in line]
    tail = "\n".join(output.splitlines()[-80:])
    assert result.returncode == 0, (
        "docs build failed (warnings are errors):\n" + "\n".join(problems) + "\n" + tail
    )
