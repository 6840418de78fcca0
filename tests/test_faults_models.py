"""Faults around models and outputs: interrupted saves, damaged checkpoints, hostile sizes, bad keys.

Each test injects one fault into real parts (tiny random-weight LangCell checkpoints in the
original layout, real AnnData objects, the real command line) and asserts the exact outcome:
the error names the cause, no partial output remains, nothing already finished is lost.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from _langcell_fixtures import CELL, write_checkpoint

import scelmo as se
from scelmo.cell_tokens import CellTokens
from scelmo.cli import main
from scelmo.models import LangCell, LangCellCE
from scelmo.models.langcell import CheckpointError

HUGE_VOCAB = 50_000_000_000  # x 32 float32 columns = 6.4 TB if it were allocated


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A checkpoint in the ORIGINAL LangCell layout (``.bin`` parts, no manifest)."""
    return write_checkpoint(tmp_path_factory.mktemp("original") / "ckpt", seed=0, with_vocab=True)


@pytest.fixture(scope="module")
def model_a(original) -> LangCell:
    return LangCell.from_pretrained(original.path)


@pytest.fixture(scope="module")
def model_b(tmp_path_factory) -> LangCell:
    return LangCell.from_pretrained(write_checkpoint(tmp_path_factory.mktemp("other") / "ckpt", seed=1).path)


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _leftovers(folder: Path) -> list[str]:
    """Temporary siblings a save may leave next to its target (hidden ``.tmp-...`` folders)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith("."))


def _failing_at(monkeypatch, module: str, name: str) -> None:
    """Make the safetensors writer of ``module`` raise when it writes the file ``name``."""
    import importlib

    target = importlib.import_module(module)
    real = target.save_safetensors

    def writer(module_, path, *args, **kwargs):
        if Path(path).name == name:
            raise OSError(28, "No space left on device", str(path))
        return real(module_, path, *args, **kwargs)

    monkeypatch.setattr(target, "save_safetensors", writer)


# --- atomic saves --------------------------------------------------------------------------------


def test_save_failing_at_the_third_part_keeps_the_old_checkpoint(model_a, model_b, tmp_path, monkeypatch):
    path = tmp_path / "saved"
    model_a.save(path)
    before = {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    # Parts are written cell_bert, text_bert, then cell_proj: the third one fails.
    _failing_at(monkeypatch, "scelmo.models.langcell._io", "cell_proj.safetensors")
    with pytest.raises(OSError, match="No space left"):
        model_b.save(path, overwrite=True)
    monkeypatch.undo()
    after = {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after == before  # not one byte of the old checkpoint changed
    assert LangCell.from_pretrained(path).checkpoint_hash == model_a.checkpoint_hash
    assert _leftovers(path) == []


def test_failed_first_save_leaves_no_folder(model_a, tmp_path, monkeypatch):
    _failing_at(monkeypatch, "scelmo.models.langcell._io", "ctm_head.safetensors")
    with pytest.raises(OSError, match="No space left"):
        model_a.save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_overwrite_replaces_the_whole_checkpoint(model_a, model_b, tmp_path):
    path = tmp_path / "saved"
    model_a.save(path)
    model_b.save(path, overwrite=True)
    assert LangCell.from_pretrained(path).checkpoint_hash == model_b.checkpoint_hash
    assert _leftovers(path) == []
    # A folder that holds something else is never replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no checkpoint"):
        model_a.save(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_langcell_ce_save_is_atomic_too(original, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    seqs = [rng.choice(np.arange(2, 20000), size=12, replace=False) for _ in range(6)]
    tokens = CellTokens(np.arange(0, 73, 12), np.concatenate(seqs).astype(np.int16))
    adata = ad.AnnData(
        np.zeros((6, 1), dtype=np.float32),
        obs=pd.DataFrame({"cell_type": pd.Categorical(list("ababab"))}, index=[f"c{i}" for i in range(6)]),
    )
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    LangCellCE.setup_anndata(adata, labels_key="cell_type")
    first = LangCellCE(adata, pretrained=original.path, seed=0)
    second = LangCellCE(adata, pretrained=original.path, seed=1)
    path = tmp_path / "ce"
    first.save(path, save_anndata=True)
    before = {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    expected = first.predict(adata, return_probs=True, progress=False)[1].to_numpy()
    real_write = ad.AnnData.write_h5ad

    def write_h5ad(self, filename=None, *args, **kwargs):
        # The last part of a LangCellCE save: the weights and settings are already written.
        if Path(filename).name == "adata.h5ad":
            raise OSError(28, "No space left on device", str(filename))
        return real_write(self, filename, *args, **kwargs)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write_h5ad)
    with pytest.raises(OSError, match="No space left"):
        second.save(path, overwrite=True, save_anndata=True)
    monkeypatch.undo()
    assert {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    loaded = LangCellCE.load(path)
    np.testing.assert_array_equal(
        loaded.predict(adata, return_probs=True, progress=False)[1].to_numpy(), expected
    )
    assert _leftovers(path) == []
    (path / "scelmo_manifest.json").unlink()
    with pytest.raises(
        CheckpointError, match=r"langcell_ce\.json is there\) but has no scelmo_manifest\.json"
    ):
        LangCellCE.load(path)


# --- partial or damaged checkpoints are refused -----------------------------------------------------


@pytest.fixture
def saved(model_a, tmp_path) -> Path:
    model_a.save(tmp_path / "saved")
    return tmp_path / "saved"


def test_a_scelmo_folder_without_manifest_is_refused(saved):
    (saved / "scelmo_manifest.json").unlink()
    with pytest.raises(
        CheckpointError, match=r"langcell_config\.json is there\) but has no scelmo_manifest\.json"
    ):
        LangCell.from_pretrained(saved)


def test_a_mixed_checkpoint_is_refused(saved, model_b, tmp_path):
    # What a save interrupted in the old way left: new cell_bert, old cell_proj.
    model_b.save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "cell_bert" / "model.safetensors", saved / "cell_bert" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"cell_bert/model\.safetensors does not match its SHA-256"):
        LangCell.from_pretrained(saved)


def test_a_missing_or_added_file_is_refused(saved):
    (saved / "text_proj.safetensors").rename(saved / "text_proj.bak")
    with pytest.raises(CheckpointError, match=r"text_proj\.safetensors is missing"):
        LangCell.from_pretrained(saved)
    (saved / "text_proj.bak").rename(saved / "text_proj.safetensors")
    (saved / "cell_proj.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"cell_proj\.bin is not in scelmo_manifest\.json"):
        LangCell.from_pretrained(saved)


def test_the_original_layout_still_loads_without_manifest(original, model_a):
    assert not (original.path / "scelmo_manifest.json").exists()
    assert LangCell.from_pretrained(original.path).checkpoint_hash == model_a.checkpoint_hash


# --- truncated parts and corrupt configurations name the file -------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_part_in_a_saved_folder(saved):
    _truncate(saved / "cell_proj.safetensors")
    with pytest.raises(
        CheckpointError, match=r"cell_proj\.safetensors has \d+ bytes but scelmo_manifest\.json says"
    ):
        LangCell.from_pretrained(saved)


@pytest.mark.parametrize(
    ("part", "file"),
    [
        ("cell_proj", "cell_proj.bin"),
        ("text_bert", "text_bert/pytorch_model.bin"),
        ("cell_bert", "cell_bert/model.safetensors"),
    ],
)
def test_truncated_part_in_the_original_layout(original, tmp_path, part, file):
    path = _copy(original.path, tmp_path / "ckpt")
    if file.endswith(".safetensors"):
        from safetensors.torch import save_file

        state = torch.load(path / "cell_bert" / "pytorch_model.bin", weights_only=True)
        save_file(state, str(path / file))
    _truncate(path / file)
    with pytest.raises(CheckpointError) as err:
        LangCell.from_pretrained(path)
    message = str(err.value)
    assert f"part '{part}'" in message
    assert str(path / file) in message
    assert "truncated, corrupt" in message


def test_corrupt_langcell_config_is_named(saved):
    config = saved / "langcell_config.json"
    config.write_text(config.read_text()[:20])
    with pytest.raises(
        CheckpointError, match=r"langcell_config\.json has \d+ bytes but scelmo_manifest\.json"
    ):
        LangCell.from_pretrained(saved)
    # The same damage where no manifest guards the folder (checked after the manifest).
    from scelmo.models.langcell._checkpoint import write_manifest

    write_manifest(saved, writer="scelmo.langcell", version=1)
    with pytest.raises(
        CheckpointError, match=r"langcell_config\.json \(scelmo's LangCell settings\) is not valid JSON"
    ):
        LangCell.from_pretrained(saved)


@pytest.mark.parametrize("part", ["cell_bert", "text_bert"])
def test_corrupt_bert_config_is_named(original, tmp_path, part):
    path = _copy(original.path, tmp_path / "ckpt")
    config = path / part / "config.json"
    config.write_text(config.read_text()[:-40])
    with pytest.raises(
        CheckpointError, match=rf"{part}/config\.json \({part}'s configuration\) is not valid JSON"
    ):
        LangCell.from_pretrained(path)


# --- sizes are checked against the weights before anything is allocated -----------------------------


@pytest.mark.parametrize(
    ("part", "key", "value", "expected"),
    [
        (
            "cell_bert",
            "vocab_size",
            HUGE_VOCAB,
            f"vocab_size={HUGE_VOCAB} but embeddings.word_embeddings.weight has 25427 rows",
        ),
        (
            "text_bert",
            "vocab_size",
            HUGE_VOCAB,
            f"vocab_size={HUGE_VOCAB} but embeddings.word_embeddings.weight has 64 rows",
        ),
        ("cell_bert", "max_position_embeddings", 10**12, "max_position_embeddings=1000000000000 but"),
        ("cell_bert", "num_hidden_layers", 1000, "num_hidden_layers=1000 but the weights have 2 layers"),
        ("cell_bert", "intermediate_size", 10**11, "intermediate_size=100000000000 but"),
        ("text_bert", "hidden_size", -3, "hidden_size=-3 is not a positive integer"),
    ],
)
def test_a_config_larger_than_its_weights_fails_fast(original, tmp_path, part, key, value, expected):
    path = _copy(original.path, tmp_path / "ckpt")
    config_path = path / part / "config.json"
    config = json.loads(config_path.read_text())
    config[key] = value
    config_path.write_text(json.dumps(config))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        LangCell.from_pretrained(path)
    elapsed = time.perf_counter() - start
    assert expected in str(err.value)
    assert str(config_path) in str(err.value)
    # Reading the three-megabyte tiny checkpoint is all the work done: no model was built.
    assert elapsed < 1.0, elapsed


def test_langcell_ce_checks_the_encoder_config_too(original, tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    shutil.copy(original.path / "cell_bert" / "pytorch_model.bin", folder / "pytorch_model.bin")
    config = json.loads((original.path / "cell_bert" / "config.json").read_text())
    config["vocab_size"] = HUGE_VOCAB
    (folder / "config.json").write_text(json.dumps(config))
    adata = ad.AnnData(
        np.zeros((2, 1), dtype=np.float32), obs=pd.DataFrame({"y": ["a", "b"]}, index=["c0", "c1"])
    )
    adata.obsm["langcell_tokens"] = CellTokens(
        np.array([0, 2, 4]), np.array([5, 6, 7, 8], dtype=np.int16)
    ).to_sparse()
    LangCellCE.setup_anndata(adata, labels_key="y")
    with pytest.raises(CheckpointError, match=f"vocab_size={HUGE_VOCAB} but"):
        LangCellCE(adata, pretrained=folder)


# --- token ids outside the vocabulary --------------------------------------------------------------


def test_token_ids_outside_the_vocabulary_are_refused(model_a):
    tokens = CellTokens(np.array([0, 3, 5]), np.array([812, 30000, 77, 13, 2], dtype=np.int16))
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32))
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    with pytest.raises(
        ValueError, match=r"token id 30000 \(the largest\).*vocabulary of 25427 tokens"
    ) as err:
        se.tl.langcell_encode(adata, model_a, progress=False)
    assert not isinstance(err.value, IndexError)
    assert "X_langcell" not in adata.obsm
    assert CELL["vocab"] == 25427


# --- keys that cannot be written to .h5ad ----------------------------------------------------------

BAD_KEYS = ["", "a/b", ".", "x\x00y"]


@pytest.fixture(scope="module")
def small() -> tuple[ad.AnnData, se.GeneEmbeddings]:
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(6)]
    adata = ad.AnnData(
        rng.random((12, 6)).astype(np.float32),
        obs=pd.DataFrame(
            {"y": list("abc") * 4, "condition": ["ctrl", "dis"] * 6}, index=[f"c{i}" for i in range(12)]
        ),
        var=pd.DataFrame(index=genes),
    )
    adata.obsm["X_rep"] = rng.normal(size=(12, 4)).astype(np.float32)
    table = se.GeneEmbeddings(genes, rng.normal(size=(6, 8)))
    return adata, table


def _calls(adata, table, model, key):
    return {
        "elmo_embed": lambda: se.tl.elmo_embed(adata, table, key_added=key, progress=False),
        "knn_annotate": lambda: se.tl.knn_annotate(adata, adata, "y", use_rep="X_rep", k=3, key_added=key),
        "langcell_encode": lambda: se.tl.langcell_encode(adata, model, key_added=key, progress=False),
        "in_silico_knockout": lambda: se.tl.in_silico_knockout(
            table, adata, ["G1"], "condition", control="ctrl", n_perm=3, key_added=key
        ),
    }


@pytest.mark.parametrize("function", ["elmo_embed", "knn_annotate", "langcell_encode", "in_silico_knockout"])
@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_key_added_is_refused_before_any_work(small, model_a, function, key):
    adata, table = small[0].copy(), small[1]
    adata.obsm["langcell_tokens"] = CellTokens(
        np.arange(0, 25, 2), np.arange(2, 26, dtype=np.int16)
    ).to_sparse()
    fields = (set(adata.obs), set(adata.obsm), set(adata.uns))
    with pytest.raises(ValueError, match=r"key_added=.* cannot be stored in an \.h5ad or \.zarr file"):
        _calls(adata, table, model_a, key)[function]()
    assert (set(adata.obs), set(adata.obsm), set(adata.uns)) == fields


def test_check_key_accepts_ordinary_keys():
    from scelmo._anndata import check_key

    for key in ["X_elmo", "knn", "zeroshot.v2", "X-langcell 2", "..x"]:
        assert check_key(key) == key
    with pytest.raises(TypeError, match="must be a string"):
        check_key(None)


def test_cli_key_added_with_a_slash_fails_and_writes_nothing(small, tmp_path, capsys):
    adata, table = small
    adata.write_h5ad(tmp_path / "in.h5ad")
    table.write(tmp_path / "genes.npz")
    out = tmp_path / "out.h5ad"
    argv = ["embed", str(tmp_path / "in.h5ad"), "-o", str(out), "--genes", str(tmp_path / "genes.npz"), "-q"]
    assert main([*argv, "--key-added", "a/b"]) == 1
    err = capsys.readouterr().err
    assert "--key-added='a/b' cannot be stored" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genes.npz", "in.h5ad"]
    assert main([*argv, "--key-added", "X_ok"]) == 0
    assert "X_ok" in ad.read_h5ad(out).obsm
