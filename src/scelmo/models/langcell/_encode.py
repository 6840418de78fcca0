"""Fast cell encoding: length-sorted batches, dynamic padding, fused attention, flat memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..._optional import import_optional
from ...cell_tokens import CellTokens

torch = import_optional("torch", "langcell", purpose="LangCell")

_DTYPES = {
    "float32": None,
    "fp32": None,
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_dtype(dtype: Any) -> Any:
    """``None``/``"fp32"`` -> ``None`` (full precision); ``"bf16"``, ``"fp16"`` or a torch dtype -> that dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ValueError(f"Unknown dtype {dtype!r}: use None (float32), 'bf16' or 'fp16'.")
        return None if _DTYPES[key] is None else getattr(torch, _DTYPES[key])
    if dtype == torch.float32:
        return None
    if dtype in (torch.bfloat16, torch.float16):
        return dtype
    raise ValueError(f"Unsupported dtype {dtype!r}: use None (float32), torch.bfloat16 or torch.float16.")


def cell_batches(
    tokens: CellTokens,
    *,
    batch_size: int = 32,
    cls_token_id: int,
    max_length: int,
    pad_token_id: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Length-sorted, dynamically padded batches of cells, built lazily from the token arrays.

    Cells are visited longest first (ties in cell order), in batches of ``batch_size`` that
    are each padded to their own longest cell; ``<cls>`` is prepended and every sequence cut
    to ``max_length`` positions. Use it for any per-batch work on the cell encoder (encoding,
    cell-text matching): scatter results back with ``index``.

    Parameters
    ----------
    tokens
        Rank-value tokens.
    batch_size
        Cells per batch.
    cls_token_id, max_length, pad_token_id
        The model's ``<cls>``, longest input and padding token.

    Yields
    ------
    ``(index, input_ids, attention_mask)``: the cells' positions in ``tokens`` and two int64
    arrays of shape ``(len(index), longest)``.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_tokens import CellTokens
    >>> from scelmo.models.langcell import cell_batches
    >>> tokens = CellTokens(np.array([0, 1, 4, 6]), np.array([5, 6, 7, 8, 9, 10]))
    >>> [(index.tolist(), ids.tolist()) for index, ids, _ in cell_batches(tokens, batch_size=2, cls_token_id=1, max_length=8)]
    [([1, 2], [[1, 6, 7, 8], [1, 9, 10, 0]]), ([0], [[1, 5]])]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    lengths = np.minimum(tokens.lengths + 1, max_length)
    # Longest first: the largest batch comes first, so a memory limit is hit at once, not at the end.
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, order.size, batch_size):
        index = order[start : start + batch_size]
        ids, mask = tokens.pad(index, prefix=cls_token_id, max_length=max_length, pad_token_id=pad_token_id)
        yield index, ids, mask


def encode_cell_tokens(
    model: Any,
    tokens: CellTokens,
    *,
    batch_size: int = 32,
    dtype: Any = None,
    store_cls: bool = False,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embed every cell of ``tokens`` with a :class:`~scelmo.models.LangCell` (on the model's device).

    Cells are processed longest first in batches of similar length, each padded only to its own
    longest cell; the input tensors of a batch are built from the flat token arrays just before
    it runs, and outputs go straight into preallocated arrays, so memory does not grow with the
    number of cells beyond the outputs. ``<cls>`` is prepended and each sequence cut to the
    encoder's 2048 positions. A cell's embedding does not depend on the other cells of its batch.

    Parameters
    ----------
    model
        The model (in evaluation mode; it is not moved).
    tokens
        Rank-value tokens (see :func:`scelmo.pp.tokenize`).
    batch_size
        Cells per forward pass.
    dtype
        ``None`` (float32), or ``"bf16"``/``"fp16"`` to run under autocast (for GPUs).
    store_cls
        Also return the raw ``<cls>`` hidden state of each cell.
    progress
        Show a progress bar.

    Returns
    -------
    ``(embeddings, cls_states)``: float32 ``(n_cells, 256)`` L2-normalised, and
    ``(n_cells, hidden)`` or ``None``.

    Examples
    --------
    >>> from scelmo.models.langcell import encode_cell_tokens
    >>> emb, _ = encode_cell_tokens(model, tokens, batch_size=64)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    autocast_dtype = resolve_dtype(dtype)
    device = model.device
    n_cells = tokens.n_cells
    embeddings = np.empty((n_cells, model.embed_dim), dtype=np.float32)
    cls_states = np.empty((n_cells, model.cell_hidden_size), dtype=np.float32) if store_cls else None
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    batches = cell_batches(
        tokens,
        batch_size=batch_size,
        cls_token_id=model.cls_token_id,
        max_length=model.cell_max_length,
        pad_token_id=model.cell_pad_token_id,
    )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast, tqdm(total=n_cells, unit="cell", disable=not progress) as bar:
            for index, ids, mask in batches:
                ids_t = torch.from_numpy(ids).to(device, non_blocking=True)
                mask_t = torch.from_numpy(mask).to(device, non_blocking=True)
                hidden = model.cell_bert(input_ids=ids_t, attention_mask=mask_t).last_hidden_state[:, 0]
                embeddings[index] = model.project_cells(hidden).float().cpu().numpy()
                if cls_states is not None:
                    cls_states[index] = hidden.float().cpu().numpy()
                bar.update(index.size)
    finally:
        model.train(was_training)
    return embeddings, cls_states
