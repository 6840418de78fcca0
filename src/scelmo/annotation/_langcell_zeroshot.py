"""LangCell's zero-shot scorer for :func:`scelmo.tl.zeroshot_annotate` (``method="langcell"``).

The computation (similarity plus cell-text matching) is model inference and lives with the
model: :func:`scelmo.models.langcell.langcell_zeroshot`. This module adapts it to the
annotation runner: :func:`langcell_token_scores` takes the cells' tokens, the class texts, the
model (or a checkpoint folder) and the options, and returns the probabilities with what the
runner records (checkpoint hash, provenance, parameters); :func:`langcell_scores` does the same
from an AnnData. Nothing here imports torch until a scorer runs.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._anndata import cell_tokens, token_matrix
from scelmo._dask_blocks import map_row_chunks, shared
from scelmo._matrix import is_dask
from scelmo.models.langcell._config import MAX_PAIRS, TEMPERATURE, ZEROSHOT_ALPHA

if TYPE_CHECKING:
    from anndata import AnnData
    from torch import device as Device
    from torch import dtype as DType

    from scelmo.cell_tokens import CellTokens
    from scelmo.models.langcell import LangCell
    from scelmo.models.langcell._network import TokenizerSource

__all__ = ["ALPHA", "MAX_PAIRS", "langcell_scores", "langcell_token_scores", "token_block_probs"]

#: Default weight of the similarity probabilities (LangCell's published setting).
ALPHA = ZEROSHOT_ALPHA
#: The options of :func:`scelmo.models.langcell.langcell_zeroshot` a scorer passes on, with their defaults.
_SCORING = {
    "alpha": ALPHA,
    "use_ctm": True,
    "temperature": None,
    "batch_size": 32,
    "max_pairs": MAX_PAIRS,
    "max_tokens": "auto",
    "ctm_top_k": None,
    "dtype": None,
    "progress": True,
}
#: The computation itself, importable from here as before (it moved to the model).
_MOVED = {"LangCellZeroShot", "class_groups", "langcell_zeroshot"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from scelmo.models.langcell import _zeroshot

        return getattr(_zeroshot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _resolve_model(
    model: LangCell | str | os.PathLike[str], text_tokenizer: TokenizerSource
) -> tuple[LangCell, str | None]:
    from scelmo.models.langcell import LangCell

    if isinstance(model, str | os.PathLike):
        path = str(model)
        return LangCell.from_pretrained(path, text_tokenizer=text_tokenizer), path
    if not isinstance(model, LangCell):
        raise TypeError(
            f"model must be a scelmo.models.LangCell or a checkpoint folder, got {type(model).__name__}."
        )
    if text_tokenizer is not None:
        model.set_text_tokenizer(text_tokenizer)
    return model, None


def _info(model: LangCell, path: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from scelmo.models.langcell._encode import resolve_dtype

    resolved = resolve_dtype(options["dtype"], model.device)
    use_ctm, ctm_top_k, temperature = options["use_ctm"], options["ctm_top_k"], options["temperature"]
    return {
        "checkpoint_hash": model.checkpoint_hash,
        "provenance": {
            "model": "LangCell",
            "checkpoint": path,
            "cell_layers": int(model.cell_bert.config.num_hidden_layers),
            "text_layers": int(model.text_bert.config.num_hidden_layers),
            "text_vocab_size": len(model.text_tokenizer),
        },
        "params": {
            "alpha": float(options["alpha"]) if use_ctm else None,
            "use_ctm": bool(use_ctm),
            "ctm_top_k": int(ctm_top_k) if use_ctm and ctm_top_k is not None else None,
            "temperature": TEMPERATURE if temperature is None else float(temperature),
            "dtype": "float32" if resolved is None else str(resolved).removeprefix("torch."),
        },
    }


def langcell_token_scores(
    tokens: CellTokens,
    texts: Sequence[str],
    model: LangCell | str | os.PathLike[str],
    options: Any = None,
    **keywords: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """LangCell's zero-shot class probabilities of cells given as tokens: the scorer of the annotation runner.

    Parameters
    ----------
    tokens
        The cells' rank-value tokens (:func:`scelmo._anndata.cell_tokens`), or a dask array of
        sparse token blocks (:func:`scelmo.pp.tokenize` on a dask matrix): then each row chunk
        is scored by a task (:func:`token_block_probs`), the model one key of the graph (sent
        to each worker once), and only the probabilities come back.
    texts
        One text per class.
    model
        A :class:`scelmo.models.LangCell` or a checkpoint folder.
    options
        An object with the options as attributes (the runner's
        :class:`~scelmo.annotation._zeroshot_options.LangCellZeroShotOptions`); those not given
        take :func:`langcell_scores`'s defaults. It may also carry ``device`` and
        ``text_tokenizer`` (see :func:`langcell_scores`).
    **keywords
        The same options as keywords; they win over ``options``.

    Returns
    -------
    ``(probs, info)``: ``(n_cells, K)`` probabilities, and ``checkpoint_hash``, ``provenance``
    and ``params`` for ``adata.uns``.

    Examples
    --------
    >>> from scelmo.annotation._langcell_zeroshot import langcell_token_scores
    >>> probs, info = langcell_token_scores(tokens, ["cell type: T cell.", "cell type: B cell."],
    ...                                     "path/to/langcell", alpha=0.1)  # doctest: +SKIP
    """
    from scelmo.models.langcell._zeroshot import langcell_zeroshot

    given = {
        name: getattr(options, name)
        for name in (*_SCORING, "device", "text_tokenizer")
        if hasattr(options, name)
    }
    given.update(keywords)
    unknown = sorted(set(given) - {*_SCORING, "device", "text_tokenizer"})
    if unknown:
        raise TypeError(f"langcell_token_scores got unknown options {unknown}.")
    scoring: dict[str, Any] = {name: given.get(name, default) for name, default in _SCORING.items()}
    model, path = _resolve_model(model, given.get("text_tokenizer"))
    if given.get("device") is not None:
        model.to(given["device"])
    if is_dask(tokens):
        return _lazy_token_probs(model, tokens, texts, scoring), _info(model, path, scoring)
    scores = langcell_zeroshot(model, tokens, texts, **scoring)
    return scores.probs, _info(model, path, scoring)


#: One LangCell zero-shot block at a time per process: torch already spreads one over the cores,
#: and the text tokenizer a block calls is not safe to call from two threads at once.
_BLOCK_LOCK = threading.Lock()


def token_block_probs(
    block: Any, model: LangCell, texts: Sequence[str], scoring: dict[str, Any]
) -> np.ndarray:
    """LangCell's zero-shot probabilities of one block of the sparse token matrix: a dask task's work.

    The block's cells are scored in length-sorted batches, as in the in-process path; a cell's
    probabilities do not depend on the cells that share its batch.

    Examples
    --------
    >>> from scelmo.annotation._langcell_zeroshot import token_block_probs
    >>> probs = token_block_probs(adata.obsm["langcell_tokens"][:100], model, texts, {})  # doctest: +SKIP
    """
    from scelmo.cell_tokens import CellTokens
    from scelmo.models.langcell._zeroshot import langcell_zeroshot

    tokens = CellTokens.from_sparse(block, name="a block of the token matrix")
    with _BLOCK_LOCK:
        return langcell_zeroshot(model, tokens, texts, **{**scoring, "progress": False}).probs


def _lazy_token_probs(
    model: LangCell, tokens: Any, texts: Sequence[str], scoring: dict[str, Any]
) -> np.ndarray:
    """The probabilities of a dask token matrix: one task per row chunk, the model one key of the graph."""
    if model.training:
        # a block switches the model to evaluation and back: tasks sharing it must not see it change
        model = copy.deepcopy(model).eval()
    parts = map_row_chunks(token_block_probs, tokens, shared(model, pure=False), list(texts), scoring)
    return np.concatenate(parts) if parts else np.empty((0, len(texts)))


def langcell_scores(
    adata: AnnData,
    texts: Sequence[str],
    model: LangCell | str | os.PathLike[str],
    *,
    alpha: float = ALPHA,
    use_ctm: bool = True,
    temperature: float | None = None,
    tokens_key: str = "langcell_tokens",
    batch_size: int = 32,
    max_pairs: int = MAX_PAIRS,
    max_tokens: int | str | None = "auto",
    ctm_top_k: int | None = None,
    device: str | Device | None = None,
    dtype: str | DType | None = None,
    text_tokenizer: TokenizerSource = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """LangCell's zero-shot class probabilities for :func:`scelmo.tl.zeroshot_annotate` (``method="langcell"``).

    Pass these options to ``zeroshot_annotate`` as keywords; see
    :func:`scelmo.models.langcell.langcell_zeroshot` for the computation.

    Parameters
    ----------
    adata
        The cells. Their tokens are read from ``adata.obsm[tokens_key]``; when absent, the
        cells are tokenized first from raw counts in ``adata.X`` (:func:`scelmo.pp.tokenize`)
        and the tokens stored there.
    texts
        One text per class.
    model
        A :class:`scelmo.models.LangCell` or a checkpoint folder.
    alpha, use_ctm, temperature, batch_size, max_pairs, max_tokens, ctm_top_k, dtype, progress
        See :func:`scelmo.models.langcell.langcell_zeroshot`.
    tokens_key
        Key of the tokens in ``adata.obsm``.
    device
        Move the model there first (it stays); default where it is (the CPU after loading).
    text_tokenizer
        The text tokenizer (folder or ``vocab.txt``) if the model has none.

    Returns
    -------
    ``(probs, info)``: ``(n_obs, K)`` probabilities, and ``checkpoint_hash``, ``provenance``
    and ``params`` for ``adata.uns``.

    Examples
    --------
    >>> import scelmo as se
    >>> se.tl.zeroshot_annotate(adata, {"T cell": "cell type: T cell. ...", "B cell": "cell type: B cell. ..."},
    ...                         method="langcell", model="path/to/langcell", alpha=0.1)  # doctest: +SKIP
    """
    model, path = _resolve_model(model, text_tokenizer)
    matrix = token_matrix(adata, tokens_key)
    tokens = matrix if is_dask(matrix) else cell_tokens(adata, tokens_key)
    probs, info = langcell_token_scores(
        tokens,
        texts,
        model,
        alpha=alpha,
        use_ctm=use_ctm,
        temperature=temperature,
        batch_size=batch_size,
        max_pairs=max_pairs,
        max_tokens=max_tokens,
        ctm_top_k=ctm_top_k,
        device=device,
        dtype=dtype,
        progress=progress,
    )
    info["provenance"]["checkpoint"] = path
    info["params"]["tokens_key"] = tokens_key
    return probs, info
