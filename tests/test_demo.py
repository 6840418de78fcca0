"""``scelmo demo``: the README's quick start, offline, on pbmc68k_reduced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scanpy as sc

import scelmo as se
from scelmo.cli import main
from scelmo.evaluation import knn_cross_validated, leiden_scores


def _env() -> dict[str, str]:
    """This process's environment (SCELMO_DATA_DIR is the session's temporary one), offline."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _rows(stdout: str) -> dict[str, list[float]]:
    """The score table the demo prints: embedding -> NMI, ARI, resolution, 10-NN accuracy, macro-F1."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith(("scELMo (X_elmo)", "PCA baseline")):
            name = line[:18].strip()
            rows[name] = [float(x) for x in line[18:].split()]
    return rows


@pytest.mark.slow
def test_demo_prints_the_scores_of_the_library_and_saves_the_umap(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scelmo", "demo", "-q", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(result.stdout)
    assert set(rows) == {"scELMo (X_elmo)", "PCA baseline"}
    # The same job through the library (the gene table now comes from the demo's cache).
    adata = sc.datasets.pbmc68k_reduced()
    table = se.pp.build_gene_embeddings(
        adata.raw.var_names, source="offline", encoder="local", progress=False
    )
    se.tl.elmo_embed(adata, table, progress=False)
    knn = knn_cross_validated(adata.obsm["X_elmo"], adata.obs["bulk_labels"])
    clustering = leiden_scores(adata, "bulk_labels", use_rep="X_elmo")
    nmi, _ari, _resolution, accuracy, macro_f1 = rows["scELMo (X_elmo)"]
    np.testing.assert_allclose(
        [nmi, accuracy, macro_f1], [clustering.nmi, knn.accuracy, knn.macro_f1], atol=5e-4
    )
    # pbmc68k_reduced: the text embedding carries the cell-type structure.
    assert nmi > 0.3
    assert accuracy > 0.6
    png = tmp_path / "out" / "umap_elmo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert sorted(p.name for p in png.parent.iterdir()) == ["umap_elmo.png"]  # no temporary file left


def test_the_old_module_still_runs_the_demo_with_a_deprecation_warning():
    result = subprocess.run(
        [sys.executable, "-m", "scelmo.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: scelmo demo")
    assert "DeprecationWarning" in result.stderr
    assert "run `scelmo demo`" in result.stderr


def test_a_file_as_output_folder_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("taken").write_text("mine")
    assert main(["demo", "-o", "taken"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == ["scelmo demo: error: --output taken is a file; give a folder"]
    assert Path("taken").read_text() == "mine"


def test_a_missing_scorer_names_the_bench_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "leidenalg", None)  # makes `import leidenalg` fail
    assert main(["demo"]) == 1
    _, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith(
        "scelmo demo: error: scelmo demo's scores needs the optional dependency 'leidenalg'"
    )
    assert line.endswith("pip install 'scelmo[bench]'")
    assert not Path("scelmo_demo").exists()  # checked before the output folder is made
