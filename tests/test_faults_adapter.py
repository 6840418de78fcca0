"""ElmoAdapter / ElmoPerturbation folders: nothing runs code on load, saves are whole or nothing, damage is refused.

Each test says what the models did before this format (scvi-tools' ``model.pt`` pickle read with
``torch.load(weights_only=False)``, written file by file into the destination) and what they do now.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import scelmo as se

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")

from scvi.model.base import BaseModelClass

from scelmo.models import ElmoAdapter, ElmoPerturbation
from scelmo.models import _scvi_persistence as persistence
from scelmo.models.langcell import CheckpointError

SAFE_FILES = {"scelmo_model.json", "model.safetensors", "attributes.safetensors", "scelmo_manifest.json"}


def labelled_cells(seed: int = 0) -> tuple[AnnData, se.GeneEmbeddings]:
    """Log-normalised cells of three types with five planted markers each, and a random gene table."""
    rng = np.random.default_rng(seed)
    n_genes, types = 30, ("T", "B", "NK")
    blocks, labels = [], []
    for t, name in enumerate(types):
        rate = np.ones(n_genes)
        rate[5 * t : 5 * t + 5] = 8.0
        blocks.append(rng.poisson(rate, size=(30, n_genes)))
        labels += [name] * 30
    adata = AnnData(
        np.log1p(np.vstack(blocks)).astype(np.float32),
        obs=pd.DataFrame({"cell_type": labels}, index=[f"cell{i}" for i in range(len(labels))]),
    )
    adata.var_names = [f"G{i}" for i in range(n_genes)]
    table = se.GeneEmbeddings(
        adata.var_names, rng.normal(size=(n_genes, 8)), provenance={"text_source": "synthetic"}
    )
    return adata, table


def perturbation_cells(seed: int = 0) -> tuple[AnnData, se.GeneEmbeddings]:
    """Control cells and cells perturbed in one of 12 genes, each shifting expression along its embedding."""
    rng = np.random.default_rng(seed)
    names = [f"P{i}" for i in range(12)]
    embeddings = rng.normal(size=(12, 8))
    effects = np.tanh(embeddings @ rng.normal(size=(8, 20)))
    blocks, labels = [3 + 0.3 * rng.normal(size=(40, 20))], ["control"] * 40
    for i, name in enumerate(names):
        blocks.append(3 + effects[i] + 0.3 * rng.normal(size=(10, 20)))
        labels += [name] * 10
    adata = AnnData(
        np.clip(np.vstack(blocks), 0, None).astype(np.float32),
        obs=pd.DataFrame({"gene": labels}, index=[f"c{i}" for i in range(len(labels))]),
    )
    adata.var_names = [f"G{i}" for i in range(20)]
    return adata, se.GeneEmbeddings(names, embeddings)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _adapter(seed: int = 0) -> tuple[ElmoAdapter, AnnData]:
    adata, table = labelled_cells()
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=seed)
    model.train(max_epochs=4, batch_size=32, check_val_every_n_epoch=2, lr=3e-3)
    return model, adata


def _perturbation(seed: int = 0) -> tuple[ElmoPerturbation, AnnData]:
    adata, table = perturbation_cells()
    ElmoPerturbation.setup_anndata(adata, perturbation_key="gene", control="control")
    model = ElmoPerturbation(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=seed)
    model.train(max_epochs=20, check_val_every_n_epoch=5)
    return model, adata


@pytest.fixture(scope="module")
def adapter() -> tuple[ElmoAdapter, AnnData]:
    return _adapter()


@pytest.fixture(scope="module")
def perturbation() -> tuple[ElmoPerturbation, AnnData]:
    return _perturbation()


def _outputs(model) -> list[np.ndarray]:
    """What a user reads off the model: latent representation and predictions."""
    if isinstance(model, ElmoAdapter):
        return [
            model.get_latent_representation(),
            model.predict(soft=True).to_numpy(),
            model.predict(soft=True, method="classifier").to_numpy(),
        ]
    return [model.get_latent_representation(), model.predict().to_numpy()]


class _WritesAMarker:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, i.e. runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("cls", [ElmoAdapter, ElmoPerturbation])
def test_a_malicious_model_pt_is_refused_without_running_it(cls, tmp_path):
    # Before: scvi-tools' load ran torch.load(weights_only=False): the marker was created, then loading failed.
    # After: the pickle is not opened; the error says how to opt in.
    folder = tmp_path / "model"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save(
        {"model_state_dict": {}, "var_names": [], "attr_dict": _WritesAMarker(marker)}, folder / "model.pt"
    )
    with pytest.raises(ValueError, match=r"trusted=True") as err:
        cls.load(folder)
    assert not marker.exists()
    assert isinstance(err.value, persistence.UntrustedModelError)
    assert "pickle" in str(err.value)
    assert str(folder / "model.pt") in str(err.value)
    # load_registry is refused too (scvi-tools' version unpickles the same file).
    with pytest.raises(FileNotFoundError, match="holds no saved model"):
        cls.load_registry(folder)
    assert not marker.exists()


def test_a_trusted_scvi_tools_pickle_loads_and_saves_into_the_safe_format(adapter, tmp_path):
    # Before: every model.pt loaded, trusted or not. After: only with trusted=True (the caller's choice).
    model, adata = adapter
    BaseModelClass.save(model, str(tmp_path / "scvi"))  # scvi-tools' own writer: model.pt
    assert (tmp_path / "scvi" / "model.pt").is_file()
    with pytest.raises(
        persistence.UntrustedModelError, match=r"ElmoAdapter\.load\(.*, adata, trusted=True\)"
    ):
        ElmoAdapter.load(tmp_path / "scvi", adata)
    loaded = ElmoAdapter.load(tmp_path / "scvi", adata, trusted=True)
    for got, want in zip(_outputs(loaded), _outputs(model), strict=True):
        np.testing.assert_array_equal(got, want)
    loaded.save(tmp_path / "safe")
    assert {p.name for p in (tmp_path / "safe").iterdir()} == SAFE_FILES
    again = ElmoAdapter.load(tmp_path / "safe", adata)
    np.testing.assert_array_equal(again.predict(), model.predict())


def test_adapter_round_trip_is_exact_and_keeps_the_knn_reference(adapter, tmp_path):
    # Before and after: identical outputs; after, no file is a pickle and every attribute comes back equal.
    model, adata = adapter
    model.save(tmp_path / "a", save_anndata=True)
    assert {p.name for p in (tmp_path / "a").iterdir()} == SAFE_FILES | {"adata.h5ad"}
    loaded = ElmoAdapter.load(tmp_path / "a", adata)
    for got, want in zip(_outputs(loaded), _outputs(model), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.reference_latent_, model.reference_latent_)
    assert loaded.reference_latent_.dtype == model.reference_latent_.dtype == np.float32
    np.testing.assert_array_equal(loaded.reference_labels_, model.reference_labels_)
    assert loaded.reference_labels_.dtype == np.int64
    assert loaded.reference_neighbors_ == model.reference_neighbors_ == 10
    assert loaded.validation_knn_history_ == model.validation_knn_history_  # a list of (epoch, score) tuples
    assert loaded.validation_history_ == model.validation_history_
    assert loaded.best_validation_scores_ == model.best_validation_scores_
    assert loaded.best_epoch_ == model.best_epoch_
    assert loaded.is_trained_
    assert set(loaded.history_) == set(model.history_)
    for name, frame in model.history_.items():
        pd.testing.assert_frame_equal(loaded.history_[name], frame)
    np.testing.assert_array_equal(loaded.train_indices_, model.train_indices_)
    stored, original = (m.init_params_["non_kwargs"]["gene_embeddings"] for m in (loaded, model))
    assert stored == original
    assert stored.provenance == original.provenance
    assert loaded.registry_["setup_args"] == model.registry_["setup_args"]
    np.testing.assert_array_equal(loaded.labels, model.labels)
    # The saved AnnData is used when none is passed.
    from_folder = ElmoAdapter.load(tmp_path / "a")
    np.testing.assert_array_equal(from_folder.predict(), model.predict())
    assert ElmoAdapter.load_registry(tmp_path / "a")["setup_args"]["labels_key"] == "cell_type"


def test_perturbation_round_trip_is_exact(perturbation, tmp_path):
    model, adata = perturbation
    model.save(tmp_path / "p")
    loaded = ElmoPerturbation.load(tmp_path / "p", adata)
    for got, want in zip(_outputs(loaded), _outputs(model), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.control_mean_, model.control_mean_)
    assert loaded.train_perturbations_ == model.train_perturbations_
    assert loaded.validation_perturbations_ == model.validation_perturbations_
    pd.testing.assert_frame_equal(loaded.predict(kind="expression"), model.predict(kind="expression"))
    with pytest.warns(UserWarning, match="no saved anndata"):
        bare = ElmoPerturbation.load(tmp_path / "p")
    pd.testing.assert_frame_equal(bare.predict(), model.predict())


@pytest.mark.parametrize("part", ["write_weights", "write_arrays", "write_json"])
def test_a_save_that_fails_part_way_leaves_the_old_folder(adapter, part, tmp_path, monkeypatch):
    # Before: files were written one by one into the folder itself: a failure left a mixture of old and new.
    # After: the old folder is intact and loads; no temporary folder is left.
    model, adata = adapter
    model.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    other, _ = _adapter(seed=1)
    assert not np.array_equal(other.get_latent_representation(), model.get_latent_representation())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persistence, part, disk_full)
    with pytest.raises(OSError, match="No space left"):
        other.save(tmp_path / "m", overwrite=True)
    with pytest.raises(OSError, match="No space left"):
        other.save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no .tmp-* folder, no half "new"
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    loaded = ElmoAdapter.load(tmp_path / "m", adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: _flip_last_byte(f / "model.safetensors"),
            r"model\.safetensors does not match its SHA-256",
        ),
        (lambda f: _flip_last_byte(f / "attributes.safetensors"), r"attributes\.safetensors does not match"),
        (
            lambda f: (f / "scelmo_model.json").write_text(
                (f / "scelmo_model.json")
                .read_text()
                .replace('"reference_neighbors_": 10', '"reference_neighbors_": 1')
            ),
            r"scelmo_model\.json (has \d+ bytes|does not match)",
        ),
        (lambda f: (f / "attributes.safetensors").unlink(), r"attributes\.safetensors is missing"),
        (
            lambda f: (f / "scelmo_manifest.json").unlink(),
            r"has no scelmo_manifest\.json: the save did not finish",
        ),
        (lambda f: (f / "model.pt").write_bytes(b"extra"), r"model\.pt is not in scelmo_manifest\.json"),
    ],
    ids=["weights", "arrays", "json", "missing", "no-manifest", "added-file"],
)
def test_a_damaged_or_partial_folder_is_refused_naming_the_file(adapter, damage, message, tmp_path):
    # Before: a changed weights file loaded silently (or failed deep in torch); a partial folder was not detected.
    # After: refused before anything is read, naming the file.
    model, adata = adapter
    model.save(tmp_path / "m")
    damage(tmp_path / "m")
    with pytest.raises(CheckpointError, match=message):
        ElmoAdapter.load(tmp_path / "m", adata)


def test_saves_refuse_other_folders_other_classes_and_unsafe_attributes(adapter, perturbation, tmp_path):
    model, adata = adapter
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        model.save(tmp_path / "notes")
    with pytest.raises(FileExistsError, match="holds files but no checkpoint"):
        model.save(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    perturbation[0].save(tmp_path / "p")
    with pytest.raises(
        CheckpointError, match=r"'scelmo\.ElmoPerturbation' checkpoint, not 'scelmo\.ElmoAdapter'"
    ):
        ElmoAdapter.load(tmp_path / "p", adata)
    # An attribute that only pickle could hold fails the save before anything is written.
    model.custom_ = object()
    try:
        with pytest.raises(TypeError, match=r"custom_ holds a builtins\.object"):
            model.save(tmp_path / "x")
    finally:
        del model.custom_
    assert not (tmp_path / "x").exists()
    manifest = json.loads((tmp_path / "p" / "scelmo_manifest.json").read_text())
    assert set(manifest["files"]) == SAFE_FILES - {"scelmo_manifest.json"}
    assert not any(name.startswith(".tmp-") for name in os.listdir(tmp_path))


def test_attribute_encoding_round_trips_every_supported_type_through_json():
    # The attributes scvi-tools pickled: each comes back with its type, dtype and value.
    values = {
        "names": np.array(["a", np.int64(3), None], dtype=object),  # scvi-tools' category arrays
        "unicode": np.array(["xy", "z"]),
        "matrix": np.arange(6, dtype=np.float64).reshape(2, 3),
        "mask": np.array([[True, False]]),
        "scalars": (np.float32(1.5), np.int64(2), 3, 4.5, None, "s", True),
        "nested": [(1, 0.5), [2, (3,)]],
        7: "an int key",
        "__tuple__": "a key that looks like a tag",
        "frame": pd.DataFrame({"loss": [0.5, 0.25]}, index=pd.Index([0, 1], name="epoch")),
        "table": se.GeneEmbeddings(["A", "B"], np.eye(2), provenance={"text_source": "x"}),
    }
    arrays: dict[str, np.ndarray] = {}
    stored = json.loads(json.dumps(persistence.encode(values, "attr", arrays)))
    back = persistence.decode(stored, arrays)
    assert set(back) == set(values)
    for key in ("names", "unicode", "matrix", "mask"):
        np.testing.assert_array_equal(back[key], values[key])
        assert back[key].dtype == values[key].dtype
    assert back["scalars"] == values["scalars"]
    assert [type(v) for v in back["scalars"]] == [type(v) for v in values["scalars"]]
    assert back["nested"] == values["nested"]
    assert back[7] == "an int key"
    assert back["__tuple__"] == "a key that looks like a tag"
    pd.testing.assert_frame_equal(back["frame"], values["frame"])
    assert back["table"] == values["table"]
    assert back["table"].provenance == {"text_source": "x"}
    assert set(arrays) == {
        "attr/matrix",
        "attr/mask",
        "attr/frame/index",
        "attr/frame/0",
        "attr/table/vectors",
    }
    with pytest.raises(TypeError, match=r"attr/bad holds a builtins\.set"):
        persistence.encode({"bad": {1}}, "attr", {})
