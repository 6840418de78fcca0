"""Package-level promises: light import, optional extras named in errors, the quick-start job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import scelmo
from scelmo._optional import import_optional

# dask is left out: anndata itself imports it when installed.
HEAVY = ("torch", "transformers", "sentence_transformers", "openai", "mygene")


def test_import_is_light():
    code = f"import sys, scelmo; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"importing scelmo imported {loaded.stdout.strip()}"


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    with pytest.raises(ImportError, match=r"pip install 'scelmo\[openai\]'"):
        import_optional("openai", "openai", purpose="OpenAI embeddings")


def test_version_in_one_place():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert scelmo.__version__.count(".") == 2


@pytest.mark.slow
def test_quick_start_job_runs_offline(tmp_path):
    """The README's main command: offline gene table, elmo_embed, scores and a UMAP PNG."""
    result = subprocess.run(
        [sys.executable, "-m", "scelmo", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {
        line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("scELMo", "PCA"))
    }
    scores = [float(x) for x in lines["scELMo"].split()[2:]]
    nmi, _ari, _resolution, accuracy, _f1 = scores
    # pbmc68k_reduced: the text embedding must carry the cell-type structure.
    assert nmi > 0.3
    assert accuracy > 0.6
    assert (tmp_path / "umap_elmo.png").stat().st_size > 10_000
