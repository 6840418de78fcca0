"""Fast cell encoding: length-sorted batches, dynamic padding, fused attention, flat memory."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from scelmo._optional import import_optional
from scelmo.cell_tokens import CellTokens

if TYPE_CHECKING:
    from torch import Tensor
    from torch import device as Device
    from torch import dtype as DType
    from transformers import BertModel
    from transformers.models.bert.modeling_bert import BertLayer

    from ._network import LangCellNetwork

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


def resolve_dtype(dtype: str | DType | None, device: Device | str | None = None) -> DType | None:
    """The autocast dtype of ``dtype``: ``None`` for float32, else ``torch.bfloat16`` or ``torch.float16``.

    ``None``/``"fp32"`` -> ``None``; ``"bf16"``, ``"fp16"`` or a torch dtype -> that dtype;
    ``"auto"`` -> bfloat16 where ``device`` computes it natively (CPUs with AVX-512 BF16 or AMX,
    GPUs with bf16 support), else float32. Measured on the CPU (``benchmarks/langcell_cpu.py``,
    published geometry, real cells): bf16 autocast encodes 1.18x and annotates 1.47x as fast as
    float32, embeddings at cosine >= 0.9999 to float32 and the same zero-shot labels; on a CPU
    without native bf16 it is emulated and slower, hence "auto" rather than bf16 everywhere.

    Examples
    --------
    >>> from scelmo.models.langcell._encode import resolve_dtype
    >>> resolve_dtype("fp32") is None, str(resolve_dtype("bf16"))
    (True, 'torch.bfloat16')
    """
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key == "auto":
            return torch.bfloat16 if native_bf16(device) else None
        if key not in _DTYPES:
            raise ValueError(f"Unknown dtype {dtype!r}: use None (float32), 'auto', 'bf16' or 'fp16'.")
        name = _DTYPES[key]
        return None if name is None else getattr(torch, name)
    if dtype == torch.float32:
        return None
    if dtype in (torch.bfloat16, torch.float16):
        return dtype
    raise ValueError(f"Unsupported dtype {dtype!r}: use None (float32), torch.bfloat16 or torch.float16.")


def native_bf16(device: Device | str | None) -> bool:
    """Whether ``device`` (default: the CPU) computes bfloat16 in hardware, as far as torch can tell."""
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    try:  # a private helper of torch's oneDNN backend: absent in some builds
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


#: Positions per batch on the CPU (``max_tokens="auto"``). Measured on 2 cores: real cells of
#: ~1,100-1,400 tokens ran 1.4-1.6x faster in batches of 2-7 cells than of 32 (a batch's
#: activations and its cells x length x length attention mask stay in cache), and short cells
#: (~230 tokens) fastest at about 8,192 positions per batch.
CPU_MAX_TOKENS = 8192
#: With ``max_tokens``, a batch also holds at most ``max_tokens * SCORES_PER_POSITION`` attention
#: scores per head (cells x length^2): long cells go two or three per batch.
SCORES_PER_POSITION = 1024


def resolve_max_tokens(max_tokens: int | str | None, device: str | Device) -> int | None:
    """``"auto"`` -> :data:`CPU_MAX_TOKENS` on the CPU and no limit on accelerators (they want large batches)."""
    if max_tokens == "auto":
        return CPU_MAX_TOKENS if torch.device(device).type == "cpu" else None
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer, 'auto' or None, got {max_tokens!r}.")
    return max_tokens


def check_token_ids(tokens: CellTokens, vocab_size: int, *, cls_token_id: int | None = None) -> None:
    """Refuse token ids outside the cell encoder's vocabulary (an embedding lookup would fail mid-run).

    Parameters
    ----------
    tokens
        Rank-value tokens.
    vocab_size
        Rows of the encoder's word embeddings (``model.cell_bert.config.vocab_size``).
    cls_token_id
        The ``<cls>`` id prepended at collation, checked too.

    Raises
    ------
    ValueError
        Naming the largest (or a negative) id and the vocabulary size.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_tokens import CellTokens
    >>> from scelmo.models.langcell._encode import check_token_ids
    >>> check_token_ids(CellTokens(np.array([0, 2]), np.array([5, 300])), 100)
    Traceback (most recent call last):
    ...
    ValueError: The cell tokens hold token id 300 (the largest), and 1 of 2 tokens are outside the cell encoder's vocabulary of 100 tokens (ids 0 to 99). The tokens were made with another vocabulary: tokenize with the Geneformer V1 dictionaries of this checkpoint (se.pp.tokenize), or load the checkpoint they were made for.
    """
    ids = tokens.tokens
    if ids.size:
        largest, smallest = int(ids.max()), int(ids.min())
        if largest >= vocab_size or smallest < 0:
            bad = int(np.count_nonzero((ids >= vocab_size) | (ids < 0)))
            shown = f"{largest} (the largest)" if largest >= vocab_size else f"{smallest} (negative)"
            raise ValueError(
                f"The cell tokens hold token id {shown}, and {bad} of {ids.size} tokens are outside the cell "
                f"encoder's vocabulary of {vocab_size} tokens (ids 0 to {vocab_size - 1}). The tokens were made "
                "with another vocabulary: tokenize with the Geneformer V1 dictionaries of this checkpoint "
                "(se.pp.tokenize), or load the checkpoint they were made for."
            )
    if cls_token_id is not None and not 0 <= cls_token_id < vocab_size:
        raise ValueError(
            f"The <cls> token id {cls_token_id} is outside the cell encoder's vocabulary of {vocab_size} tokens."
        )


def cell_batches(
    tokens: CellTokens,
    *,
    batch_size: int = 32,
    cls_token_id: int,
    max_length: int,
    pad_token_id: int = 0,
    max_tokens: int | None = None,
    vocab_size: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Length-sorted, dynamically padded batches of cells, built lazily from the token arrays.

    Cells are visited longest first (ties in cell order), in batches of at most ``batch_size``
    cells and at most ``max_tokens`` padded positions (at least one cell), each padded to its
    own longest cell; ``<cls>`` is prepended and every sequence cut to ``max_length``
    positions. Use it for any per-batch work on the cell encoder (encoding, cell-text
    matching): scatter results back with ``index``.

    Parameters
    ----------
    tokens
        Rank-value tokens.
    batch_size
        Most cells per batch.
    cls_token_id, max_length, pad_token_id
        The model's ``<cls>``, longest input and padding token.
    max_tokens
        Most positions (cells x padded length) per batch, and at most ``max_tokens * 1024``
        attention scores per head (cells x length^2); ``None``: no limit. Long cells then go in
        small batches and short ones in large batches.
    vocab_size
        The encoder's vocabulary size: every token id (and ``<cls>``) is checked against it
        before the first batch (:func:`check_token_ids`); ``None``: not checked.

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
    >>> [index.tolist() for index, _, _ in cell_batches(tokens, batch_size=2, cls_token_id=1, max_length=8, max_tokens=5)]
    [[1], [2], [0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if vocab_size is not None:
        check_token_ids(tokens, vocab_size, cls_token_id=cls_token_id)
    return _batches(tokens, batch_size, cls_token_id, max_length, pad_token_id, max_tokens)


def _batches(
    tokens: CellTokens,
    batch_size: int,
    cls_token_id: int,
    max_length: int,
    pad_token_id: int,
    max_tokens: int | None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    lengths = np.minimum(tokens.lengths + 1, max_length)
    # Longest first: the largest batch comes first, so a memory limit is hit at once, not at the end.
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < order.size:
        size = batch_size
        if max_tokens is not None:
            width = int(lengths[order[start]])
            fits = min(max_tokens // width, max_tokens * SCORES_PER_POSITION // width**2)
            size = max(1, min(batch_size, fits))
        index = order[start : start + size]
        start += size
        ids, mask = tokens.pad(index, prefix=cls_token_id, max_length=max_length, pad_token_id=pad_token_id)
        yield index, ids, mask


def _cls_only_last_layer_supported(bert: BertModel) -> bool:
    """Whether :func:`cls_hidden_state` may compute the last layer for ``<cls>`` alone.

    True for a plain (absolute positions, encoder-only) Hugging Face ``BertModel``, whose last
    layer's ``<cls>`` output depends on the other positions only through attention keys/values.
    """
    config = bert.config
    layer = cast("BertLayer", bert.encoder.layer[-1])
    return (
        getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
        and not getattr(config, "add_cross_attention", False)
        and not getattr(config, "chunk_size_feed_forward", 0)
        and hasattr(layer.attention.self, "query")
        and len(bert.encoder.layer) > 1
    )


def _without_last_layer(bert: BertModel) -> BertModel:
    """A view of ``bert`` without its last layer, sharing every weight; ``bert`` is not changed.

    Truncating ``bert.encoder.layer`` in place would race with another thread running the same
    model (a dask worker's threads, for example); the view's module dicts are its own.
    """
    encoder = copy.copy(bert.encoder)
    encoder._modules = dict(encoder._modules)
    encoder.layer = bert.encoder.layer[:-1]
    view = copy.copy(bert)
    view._modules = dict(view._modules)
    view.encoder = encoder
    return view


def cls_hidden_state(bert: BertModel, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``bert(input_ids, attention_mask).last_hidden_state[:, 0]``, with the last layer run for ``<cls>`` only.

    Every layer but the last runs as usual (all positions feed the last layer's keys and
    values); in the last layer the query, attention output, feed-forward block and LayerNorms
    act on the ``<cls>`` row alone, which saves about ``1 / n_layers`` of the work and is exact
    (same operations on the rows that matter). Falls back to the full forward pass for
    configurations where that shortcut does not hold (relative positions, decoders).

    Parameters
    ----------
    bert
        A Hugging Face ``BertModel`` in evaluation mode.
    input_ids, attention_mask
        ``(batch, length)`` tensors.

    Returns
    -------
    ``(batch, hidden)`` tensor.

    Examples
    --------
    >>> import torch, transformers
    >>> from scelmo.models.langcell import cls_hidden_state
    >>> config = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
    ...                                  num_attention_heads=2, intermediate_size=32)
    >>> bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    >>> ids, mask = torch.tensor([[2, 5, 7, 0]]), torch.tensor([[1, 1, 1, 0]])
    >>> with torch.inference_mode():
    ...     full = bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    ...     torch.allclose(cls_hidden_state(bert, ids, mask), full, atol=1e-5)
    True
    """
    if not _cls_only_last_layer_supported(bert):
        return bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
    last = cast("BertLayer", bert.encoder.layer[-1])  # a ModuleList item is typed as a plain Module
    hidden = _without_last_layer(bert)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    attention = last.attention.self
    heads = attention.num_attention_heads
    width = attention.attention_head_size

    def split(x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], heads, width).transpose(1, 2)

    query = split(attention.query(hidden[:, :1]))
    keys, values = split(attention.key(hidden)), split(attention.value(hidden))
    padding = attention_mask[:, None, None, :] == 0
    # Additive mask in the compute dtype; a boolean mask would take a slower SDPA path on CPU.
    additive = torch.zeros(padding.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
        padding, torch.finfo(hidden.dtype).min
    )
    context = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=additive)
    context = context.transpose(1, 2).reshape(hidden.shape[0], 1, heads * width)
    cls = last.attention.output(context, hidden[:, :1])
    cls = last.output(last.intermediate(cls), cls)
    return cls[:, 0]


def model_batches(
    model: LangCellNetwork, tokens: CellTokens, *, batch_size: int, max_tokens: int | str | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`cell_batches` with the model's ``<cls>``, padding, length and vocabulary, on its device's budget."""
    return cell_batches(
        tokens,
        batch_size=batch_size,
        cls_token_id=model.cls_token_id,
        max_length=model.cell_max_length,
        pad_token_id=model.cell_pad_token_id,
        max_tokens=resolve_max_tokens(max_tokens, model.device),
        vocab_size=int(model.cell_bert.config.vocab_size),
    )


def autocast_context(device: Device, dtype: str | DType | None) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` in ``dtype`` on ``device``, or a no-op for float32 (``None``)."""
    autocast_dtype = resolve_dtype(dtype, device)
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=autocast_dtype)


def encode_cell_tokens(
    model: LangCellNetwork,
    tokens: CellTokens,
    *,
    batch_size: int = 32,
    max_tokens: int | str | None = "auto",
    dtype: str | DType | None = None,
    store_cls: bool = False,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embed every cell of ``tokens`` with a :class:`~scelmo.models.LangCell` (on the model's device).

    Cells are processed longest first in batches of similar length, each padded only to its own
    longest cell; the input tensors of a batch are built from the flat token arrays just before
    it runs, and outputs go straight into preallocated arrays, so memory does not grow with the
    number of cells beyond the outputs. ``<cls>`` is prepended and each sequence cut to the
    encoder's 2048 positions. A cell's embedding does not depend on the other cells of its batch.
    The last layer is computed for ``<cls>`` alone (:func:`cls_hidden_state`).

    Parameters
    ----------
    model
        The model (in evaluation mode; it is not moved).
    tokens
        Rank-value tokens (see :func:`scelmo.pp.tokenize`).
    batch_size
        Most cells per forward pass.
    max_tokens
        Most positions (cells x padded length) per forward pass (see :func:`cell_batches`):
        ``"auto"`` is 8,192 on the CPU (small batches of long cells keep the activations in
        cache) and no limit on a GPU; ``None``: no limit. Results do not depend on it.
    dtype
        ``None`` (float32), ``"auto"`` (bfloat16 where the device computes it natively, see
        :func:`resolve_dtype`), or ``"bf16"``/``"fp16"`` to run under autocast.
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

    device = model.device
    n_cells = tokens.n_cells
    embeddings = np.empty((n_cells, model.embed_dim), dtype=np.float32)
    cls_states = np.empty((n_cells, model.cell_hidden_size), dtype=np.float32) if store_cls else None
    autocast = autocast_context(device, dtype)
    batches = model_batches(model, tokens, batch_size=batch_size, max_tokens=max_tokens)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast, tqdm(total=n_cells, unit="cell", disable=not progress) as bar:
            for index, ids, mask in batches:
                ids_t = torch.from_numpy(ids).to(device, non_blocking=True)
                mask_t = torch.from_numpy(mask).to(device, non_blocking=True)
                hidden = cls_hidden_state(model.cell_bert, ids_t, mask_t)
                embeddings[index] = model.project_cells(hidden).float().cpu().numpy()
                if cls_states is not None:
                    cls_states[index] = hidden.float().cpu().numpy()
                bar.update(index.size)
    finally:
        model.train(was_training)
    return embeddings, cls_states


def encode_token_block(
    block: Any,
    model: LangCellNetwork,
    *,
    batch_size: int = 32,
    max_tokens: int | str | None = "auto",
    dtype: str | DType | None = None,
    store_cls: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`encode_cell_tokens` on one block of the sparse token matrix: a dask task's work.

    The block's cells are encoded in length-sorted batches, as in the in-process path, so a
    cell's embedding is the same whichever block holds it.

    Examples
    --------
    >>> from scelmo.models.langcell import encode_token_block
    >>> emb, _ = encode_token_block(adata.obsm["langcell_tokens"][:100], model)  # doctest: +SKIP
    """
    tokens = CellTokens.from_sparse(block, name="a block of the token matrix")
    return encode_cell_tokens(
        model,
        tokens,
        batch_size=batch_size,
        max_tokens=max_tokens,
        dtype=dtype,
        store_cls=store_cls,
        progress=False,
    )


def lazy_encode_cell_tokens(
    model: LangCellNetwork,
    token_matrix: Any,
    *,
    batch_size: int = 32,
    max_tokens: int | str | None = "auto",
    dtype: str | DType | None = None,
    store_cls: bool = False,
) -> tuple[Any, Any | None]:
    """LangCell embeddings of a dask token matrix as lazy dask arrays, one task per row chunk.

    The model enters the graph once, as one key every task depends on: a distributed scheduler
    sends it to each worker once, not with each task. Each task runs :func:`encode_token_block`.

    Parameters
    ----------
    model
        The model (its device is used on the workers too: keep it on the CPU for a CPU cluster;
        with one GPU per worker, e.g. dask-cuda's ``LocalCUDACluster``, the model is moved to
        each worker's GPU when it is unpickled there if it was on a GPU when the graph was built).
    token_matrix
        Dask array of sparse ``n_cells x max_length`` token blocks (:func:`scelmo.pp.tokenize` on
        a dask matrix writes one).
    batch_size, max_tokens, dtype, store_cls
        As in :func:`encode_cell_tokens`.

    Returns
    -------
    ``(embeddings, cls_states)``: dask arrays ``(n_cells, 256)`` and ``(n_cells, hidden)`` or ``None``.

    Examples
    --------
    >>> from scelmo.models.langcell import lazy_encode_cell_tokens
    >>> emb, _ = lazy_encode_cell_tokens(model, adata.obsm["langcell_tokens"])  # doctest: +SKIP
    >>> emb.to_zarr("X_langcell.zarr")  # doctest: +SKIP
    """
    from scelmo._dask_blocks import lazy_row_chunks, shared

    width = model.embed_dim + (model.cell_hidden_size if store_cls else 0)
    # One task per chunk returns embeddings and <cls> states side by side; the two outputs are
    # column slices of it (two separate arrays from one task would run the task twice).
    both = lazy_row_chunks(
        _encode_block_side_by_side,
        token_matrix,
        shared(model, pure=False),
        width=width,
        out_dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        batch_size=batch_size,
        max_tokens=max_tokens,
        dtype=dtype,
        store_cls=store_cls,
    )
    embeddings = both[:, : model.embed_dim]
    return embeddings, (both[:, model.embed_dim :] if store_cls else None)


def _encode_block_side_by_side(
    block: Any, model: LangCellNetwork, *, start: int, **options: Any
) -> np.ndarray:
    """:func:`encode_token_block` with its two outputs as one array (``start`` is not needed)."""
    embeddings, cls_states = encode_token_block(block, model, **options)
    return embeddings if cls_states is None else np.hstack([embeddings, cls_states])
