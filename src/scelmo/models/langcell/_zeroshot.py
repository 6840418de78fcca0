"""LangCell's zero-shot scores: cell-text similarity plus cell-text matching (CTM), from tokens and texts.

For K class texts and a cell (Zhao et al., ICML 2024, as in the released notebook):

- ``sim_probs = softmax(cell_emb @ text_emb.T / 0.05)`` over the K classes;
- CTM: for each class ``k``, the text encoder reads text ``k`` while cross-attending to the
  cell's last hidden states; ``p_k = softmax(ctm_head(h[:, 0]))[:, 1]`` is the match
  probability and ``ctm_probs = softmax([p_1, ..., p_K])`` (a softmax of probabilities, as
  published);
- ``probs = alpha * sim_probs + (1 - alpha) * ctm_probs``; the prediction is its argmax
  (``alpha = 0.1`` in the published results).

What is done differently from the original, with the same numbers (to float rounding):

- class texts are tokenised and embedded once, not once per cell batch;
- cells are visited in length-sorted batches, each padded to its own longest cell
  (:func:`scelmo.models.langcell.cell_batches`), with fused attention in the cell encoder;
- per cell batch, the cross-attention keys and values of every text layer are computed once
  and shared by all K classes, and the (class, cell) pairs of a batch go through the text
  encoder together (:meth:`scelmo.models.LangCell.ctm_logits`), instead of one multimodal pass
  per class that recomputes the keys and values;
- classes are grouped by text length, so a short text is not padded to the longest one.

Optionally (``ctm_top_k``, off by default, which changes the results), CTM runs only on each
cell's ``k`` most similar classes, as BLIP re-ranks the top candidates of its contrastive
similarity: ``ctm_probs`` is then the softmax over those ``k`` classes and 0 elsewhere, so
the prediction is always one of them.

Writing the scores into an AnnData is :func:`scelmo.tl.zeroshot_annotate`'s work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scelmo._optional import import_optional
from scelmo.cell_tokens import CellTokens

from ._config import MAX_PAIRS, TEMPERATURE, ZEROSHOT_ALPHA
from ._encode import autocast_context, cls_hidden_state, model_batches

if TYPE_CHECKING:
    from torch import Tensor
    from torch import device as Device
    from torch import dtype as DType

    from ._network import LangCellNetwork

torch = import_optional("torch", "langcell", purpose="LangCell zero-shot scoring")

__all__ = ["ALPHA", "MAX_PAIRS", "LangCellZeroShot", "class_groups", "langcell_zeroshot"]

#: Default weight of the similarity probabilities (LangCell's published setting).
ALPHA = ZEROSHOT_ALPHA


@dataclass
class LangCellZeroShot:
    """LangCell's zero-shot scores of every cell against K class texts.

    Attributes
    ----------
    probs
        ``(n_cells, K)`` ``alpha * sim_probs + (1 - alpha) * ctm_probs`` (``sim_probs`` when
        CTM is off); rows sum to one and the prediction is the argmax.
    sim_probs
        ``(n_cells, K)`` ``softmax(cell_emb @ text_emb.T / temperature)``.
    ctm_probs
        ``(n_cells, K)`` ``softmax`` of the match probabilities, or ``None`` without CTM.
    match_probs
        ``(n_cells, K)`` raw CTM match probabilities ``p_k``, or ``None`` without CTM; with
        ``ctm_top_k``, NaN for the classes outside a cell's top ``k``.
    cell_embeddings
        ``(n_cells, 256)`` L2-normalised cell embeddings (as :func:`scelmo.tl.langcell_encode`).

    Examples
    --------
    >>> from scelmo.models.langcell import langcell_zeroshot
    >>> scores = langcell_zeroshot(model, tokens, ["cell type: T cell.", "cell type: B cell."])  # doctest: +SKIP
    >>> scores.probs.argmax(1)  # doctest: +SKIP
    """

    probs: np.ndarray
    sim_probs: np.ndarray
    ctm_probs: np.ndarray | None
    match_probs: np.ndarray | None
    cell_embeddings: np.ndarray


def class_groups(lengths: Sequence[int] | np.ndarray, max_classes: int) -> list[np.ndarray]:
    """Classes grouped by text length for the CTM passes: each group is padded to its own longest text.

    Classes are sorted by length and cut into runs of at most ``max_classes``; a run is also
    closed when the next text is more than a quarter longer than the run's shortest (a short
    text then does not pay for the padding of a long one).

    Examples
    --------
    >>> from scelmo.models.langcell import class_groups
    >>> [g.tolist() for g in class_groups([10, 50, 11, 52, 12], max_classes=8)]
    [[0, 2, 4], [1, 3]]
    """
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    groups: list[list[int]] = []
    for k in order:
        if groups and len(groups[-1]) < max_classes and lengths[k] <= 1.25 * lengths[groups[-1][0]]:
            groups[-1].append(int(k))
        else:
            groups.append([int(k)])
    return [np.asarray(g) for g in groups]


def _checked_texts(
    texts: Sequence[str] | str,
    alpha: float,
    temperature: float,
    batch_size: int,
    max_pairs: int,
    ctm_top_k: int | None,
) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if len(texts) < 1:
        raise ValueError("Zero-shot scoring needs at least one class text.")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("Every class text must be a non-empty string.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be between 0 and 1, got {alpha}.")
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")
    if batch_size < 1 or max_pairs < 1:
        raise ValueError(f"`batch_size` and `max_pairs` must be positive, got {batch_size} and {max_pairs}.")
    if ctm_top_k is not None and (
        isinstance(ctm_top_k, bool) or int(ctm_top_k) != ctm_top_k or ctm_top_k < 1
    ):
        raise ValueError(f"`ctm_top_k` must be None or a positive integer, got {ctm_top_k!r}.")
    return texts


class _Scores:
    """The arrays a zero-shot run fills, batch by batch."""

    def __init__(
        self, n_cells: int, n_classes: int, embed_dim: int, use_ctm: bool, top_k: int | None
    ) -> None:
        self.sim_probs = np.empty((n_cells, n_classes), dtype=np.float64)
        self.match = np.full((n_cells, n_classes), np.nan) if use_ctm else None
        self.top_k = top_k
        self.chosen = np.zeros((n_cells, n_classes), dtype=bool) if top_k is not None else None
        self.embeddings = np.empty((n_cells, embed_dim), dtype=np.float32)

    def wanted(self, rows: np.ndarray) -> np.ndarray | None:
        """Classes to run CTM on for these cells: all (``None``), or the union of their top ``k``."""
        if self.chosen is None:
            return None
        # The batch's union of top classes runs; each cell keeps its own in `result`.
        best = np.argsort(-self.sim_probs[rows], axis=1, kind="stable")[:, : self.top_k]
        self.chosen[rows[:, None], best] = True
        return self.chosen[rows].any(axis=0)

    def result(self, alpha: float) -> LangCellZeroShot:
        """Combine similarity and matching probabilities."""
        sim_probs, match, chosen = self.sim_probs, self.match, self.chosen
        if match is None:
            return LangCellZeroShot(sim_probs, sim_probs, None, None, self.embeddings)
        considered = match if chosen is None else np.where(chosen, match, -np.inf)
        ctm_probs = np.exp(considered - considered.max(axis=1, keepdims=True))
        ctm_probs /= ctm_probs.sum(axis=1, keepdims=True)
        if chosen is not None:
            match = np.where(chosen, match, np.nan)
        probs = alpha * sim_probs + (1.0 - alpha) * ctm_probs
        return LangCellZeroShot(probs, sim_probs, ctm_probs, match, self.embeddings)


def _text_groups(
    text_inputs: dict[str, Tensor], per_pass: int, device: Device
) -> list[tuple[np.ndarray, dict[str, Tensor]]]:
    """CTM inputs per group of classes, each keeping only its own columns (no padding to the longest text)."""
    lengths = text_inputs["attention_mask"].sum(1).tolist()
    groups = []
    for group in class_groups(lengths, per_pass):
        width = int(max(lengths[k] for k in group))
        index = torch.as_tensor(group, device=device)
        groups.append((group, {name: value[index, :width] for name, value in text_inputs.items()}))
    return groups


def _match_batch(
    model: LangCellNetwork,
    scores: _Scores,
    rows: np.ndarray,
    hidden: Tensor,
    mask: Tensor,
    groups: list[tuple[np.ndarray, dict[str, Tensor]]],
) -> None:
    """CTM match probabilities of one cell batch against the classes it needs."""
    assert scores.match is not None  # CTM scoring: the matrix exists (use_ctm)
    cache = model.cross_attention_cache(hidden, mask)
    wanted = scores.wanted(rows)
    for group, inputs in groups:
        if wanted is not None:
            keep = np.flatnonzero(wanted[group])
            if keep.size == 0:
                continue
            if keep.size < group.size:
                picked = torch.as_tensor(keep, device=mask.device)
                group = group[keep]
                inputs = {name: value[picked] for name, value in inputs.items()}
        p = model.ctm_match_probs(inputs, cache=cache).float()
        scores.match[rows[:, None], group[None, :]] = p.double().cpu().numpy()


def _score_cells(
    model: LangCellNetwork,
    tokens: CellTokens,
    scores: _Scores,
    text_emb: Tensor,
    groups: list[tuple[np.ndarray, dict[str, Tensor]]],
    *,
    temperature: float,
    batch_size: int,
    max_tokens: int | str | None,
    progress: bool,
) -> None:
    """Similarity (and, with ``groups``, matching) of every cell batch."""
    from tqdm.auto import tqdm

    device = model.device
    batches = model_batches(model, tokens, batch_size=batch_size, max_tokens=max_tokens)
    use_ctm = scores.match is not None
    with tqdm(total=tokens.n_cells, unit="cell", disable=not progress, desc="LangCell zero-shot") as bar:
        for index, ids, mask in batches:
            ids_t = torch.from_numpy(ids).to(device)
            mask_t = torch.from_numpy(mask).to(device)
            if use_ctm:
                emb, hidden = model.encode_cells(ids_t, mask_t)
            else:
                # Only the <cls> state is needed: skip keeping the hidden states around.
                emb = model.project_cells(cls_hidden_state(model.cell_bert, ids_t, mask_t))
            emb = emb.float()
            scores.embeddings[index] = emb.cpu().numpy()
            scores.sim_probs[index] = (emb @ text_emb.T / temperature).softmax(dim=-1).double().cpu().numpy()
            if use_ctm:
                _match_batch(model, scores, np.asarray(index), hidden, mask_t, groups)
                del hidden
            bar.update(len(index))


def langcell_zeroshot(
    model: LangCellNetwork,
    tokens: CellTokens,
    texts: Sequence[str],
    *,
    alpha: float = ALPHA,
    use_ctm: bool = True,
    temperature: float | None = None,
    batch_size: int = 32,
    max_pairs: int = MAX_PAIRS,
    max_tokens: int | str | None = "auto",
    ctm_top_k: int | None = None,
    dtype: str | DType | None = None,
    progress: bool = True,
) -> LangCellZeroShot:
    """Zero-shot class probabilities of every cell from LangCell (similarity and cell-text matching).

    Runs on the model's device, in evaluation mode under ``torch.inference_mode``; the model is
    left in the mode it was in.

    Parameters
    ----------
    model
        A :class:`scelmo.models.LangCell` with a text tokenizer.
    tokens
        Rank-value tokens of the cells (:func:`scelmo.pp.tokenize`).
    texts
        One text per class (LangCell: ``"cell type: NAME. DEFINITION"``).
    alpha
        Weight of the similarity probabilities; ``1 - alpha`` goes to the CTM probabilities.
    use_ctm
        Run cell-text matching. ``False``: similarity only (one cell-encoder pass per cell,
        much faster; ``alpha`` is then ignored).
    temperature
        Temperature of the similarity softmax (LangCell's 0.05 by default).
    batch_size
        Most cells per cell-encoder pass.
    max_pairs
        Largest number of (cell, class) pairs per text-encoder pass (bounds memory with many classes).
    max_tokens
        Most cell positions (cells x padded length) per cell-encoder pass; ``"auto"``: 8,192 on
        the CPU, no limit on a GPU (see :func:`scelmo.models.langcell.encode_cell_tokens`).
    ctm_top_k
        ``None`` (the published computation): CTM on every class. An integer ``k``: CTM only
        on each cell's ``k`` classes of highest similarity, ``ctm_probs`` the softmax over
        them (0 for the others). This is an approximation: a class outside a cell's top ``k``
        by similarity cannot be predicted for it. The text encoder's work, most of the CTM
        cost, falls roughly by ``K / k`` (less when the cells of a batch disagree on their top
        classes). A cell's result does not depend on the cells that share its batch.
    dtype
        ``None`` (float32), or ``"bf16"``/``"fp16"`` to run under autocast (GPUs).
    progress
        Show a progress bar.

    Returns
    -------
    The scores (see :class:`LangCellZeroShot`).

    Examples
    --------
    >>> from scelmo.models.langcell import langcell_zeroshot
    >>> scores = langcell_zeroshot(model, tokens, texts, alpha=0.1)  # doctest: +SKIP
    >>> predicted = np.asarray(classes)[scores.probs.argmax(1)]  # doctest: +SKIP
    """
    temperature = TEMPERATURE if temperature is None else float(temperature)
    texts = _checked_texts(texts, alpha, temperature, batch_size, max_pairs, ctm_top_k)
    device = model.device
    n_cells, n_classes = tokens.n_cells, len(texts)
    top_k = None if ctm_top_k is None or ctm_top_k >= n_classes else int(ctm_top_k)
    scores = _Scores(n_cells, n_classes, model.embed_dim, use_ctm, top_k)
    autocast = autocast_context(device, dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast:
            text_inputs = model.tokenize_texts(texts)
            text_emb = model.encode_texts(text_inputs).float()
            per_pass = max(1, max_pairs // max(1, min(batch_size, n_cells)))
            groups = _text_groups(text_inputs, per_pass, device) if use_ctm else []
            _score_cells(
                model,
                tokens,
                scores,
                text_emb,
                groups,
                temperature=temperature,
                batch_size=batch_size,
                max_tokens=max_tokens,
                progress=progress,
            )
    finally:
        model.train(was_training)
    return scores.result(alpha)
