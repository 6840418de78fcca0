"""Gradient x input of LangCell's zero-shot class probabilities on a cell's gene tokens.

For one cell and class ``k``, the score is the probability that decides the label,
``alpha * sim_probs[k] + (1 - alpha) * ctm_probs[k]`` (``sim_probs[k]`` without CTM; see
:mod:`scelmo.models.langcell._zeroshot`). The contribution of the gene at rank ``r`` is

``c_r = sum_d e_r[d] * d score / d e_r[d]``

where ``e_r`` is the token's input embedding (the word embedding, before the position
embedding is added). ``c_r`` is the derivative of the score along a scaling of that one token's
embedding, ``d score(e_r * (1 + t)) / dt`` at ``t = 0``: a first-order (linear) estimate of how
the score moves with the token. It is approximate: the contributions do not sum to the score,
a token's effect through attention is not linear, and the probability saturates (a cell
assigned with probability near 1 has small gradients everywhere). The ``<cls>`` token is not
a gene and gets none.

Model inference only: takes tokens and texts, never an AnnData.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._optional import import_optional
from scelmo.cell_tokens import CellTokens

from ._config import TEMPERATURE, ZEROSHOT_ALPHA

if TYPE_CHECKING:
    from torch import Tensor

    from ._network import LangCellNetwork

torch = import_optional("torch", "langcell", purpose="LangCell explanations")

__all__ = ["TokenAttributions", "class_probabilities", "token_attributions"]


@dataclass(frozen=True)
class TokenAttributions:
    """Gradient x input of one cell's class probabilities on its gene tokens.

    Attributes
    ----------
    tokens
        ``(n_tokens,)`` the cell's gene token ids, highest rank first (``<cls>`` left out;
        truncated to the model's input length).
    classes
        ``(n_targets,)`` the class indices explained.
    contributions
        ``(n_targets, n_tokens)`` gradient x input of each class's probability on each token.
    probs
        ``(K,)`` the cell's class probabilities (as :func:`scelmo.models.langcell.langcell_zeroshot`).
    """

    tokens: np.ndarray
    classes: np.ndarray
    contributions: np.ndarray
    probs: np.ndarray


def class_probabilities(
    model: LangCellNetwork,
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    text_inputs: dict[str, Tensor],
    text_emb: Tensor,
    *,
    alpha: float = ZEROSHOT_ALPHA,
    use_ctm: bool = True,
    temperature: float | None = None,
) -> Tensor:
    """Zero-shot class probabilities ``(n_cells, K)`` from the cells' token input embeddings.

    The computation of :func:`scelmo.models.langcell.langcell_zeroshot` (every class gets CTM),
    differentiable in ``inputs_embeds``.

    Parameters
    ----------
    model
        The LangCell network.
    inputs_embeds
        ``(n_cells, length, hidden)`` word embeddings of ``<cls>`` and the gene tokens.
    attention_mask
        ``(n_cells, length)``.
    text_inputs, text_emb
        The class texts, tokenized (:meth:`~scelmo.models.LangCell.tokenize_texts`) and embedded.
    alpha, use_ctm, temperature
        As in :func:`~scelmo.models.langcell.langcell_zeroshot`.

    Returns
    -------
    The probabilities.

    Examples
    --------
    >>> from scelmo.models.langcell._explain import class_probabilities
    >>> probs = class_probabilities(model, embeds, mask, texts, text_emb)  # doctest: +SKIP
    """
    temperature = TEMPERATURE if temperature is None else float(temperature)
    hidden = model.cell_bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
    cell_emb = model.project_cells(hidden[:, 0])
    sim_probs = (cell_emb @ text_emb.T.to(cell_emb.dtype) / temperature).softmax(dim=-1)
    if not use_ctm:
        return sim_probs
    match = model.ctm_match_probs(text_inputs, hidden, attention_mask)
    return alpha * sim_probs + (1.0 - alpha) * match.to(sim_probs.dtype).softmax(dim=-1)


def _one_cell(
    model: LangCellNetwork,
    tokens: CellTokens,
    cell: int,
    targets: np.ndarray,
    text_inputs: dict[str, Tensor],
    text_emb: Tensor,
    options: dict[str, Any],
) -> TokenAttributions:
    ids, mask = tokens.pad([cell], prefix=model.cls_token_id, max_length=model.cell_max_length)
    ids_t = torch.from_numpy(ids).to(model.device)
    mask_t = torch.from_numpy(mask).to(model.device)
    embeds = model.cell_bert.embeddings.word_embeddings(ids_t).detach().requires_grad_(True)
    probs = class_probabilities(model, embeds, mask_t, text_inputs, text_emb, **options)[0]
    rows = []
    for i, k in enumerate(targets):
        (grad,) = torch.autograd.grad(probs[int(k)], embeds, retain_graph=i + 1 < len(targets))
        rows.append((grad * embeds).sum(-1)[0, 1:].detach().double().cpu().numpy())
    n_tokens = ids.shape[1] - 1
    contributions = np.stack(rows) if rows else np.zeros((0, n_tokens))
    return TokenAttributions(
        tokens=ids[0, 1:].copy(),
        classes=np.asarray(targets, dtype=np.int64),
        contributions=contributions,
        probs=probs.detach().double().cpu().numpy(),
    )


def token_attributions(
    model: LangCellNetwork,
    tokens: CellTokens,
    texts: Sequence[str],
    targets: Sequence[Sequence[int] | np.ndarray],
    *,
    alpha: float = ZEROSHOT_ALPHA,
    use_ctm: bool = True,
    temperature: float | None = None,
) -> list[TokenAttributions]:
    """Gradient x input of each cell's class probabilities on its gene tokens (see the module description).

    Runs on the model's device in evaluation mode, one cell at a time (an explanation is for a
    few cells); the model's weights get no gradients and it is left in the mode it was in.

    Parameters
    ----------
    model
        A :class:`scelmo.models.LangCell` with a text tokenizer.
    tokens
        The cells' rank-value tokens.
    texts
        One text per class, as scored.
    targets
        Per cell, the class indices to explain.
    alpha, use_ctm, temperature
        As in :func:`scelmo.models.langcell.langcell_zeroshot`.

    Returns
    -------
    One :class:`TokenAttributions` per cell.

    Examples
    --------
    >>> from scelmo.models.langcell._explain import token_attributions
    >>> found = token_attributions(model, tokens, ["cell type: T cell.", "cell type: B cell."], [[0]])  # doctest: +SKIP
    >>> found[0].contributions.shape  # doctest: +SKIP
    (1, 300)
    """
    if len(targets) != tokens.n_cells:
        raise ValueError(
            f"`targets` needs one list of classes per cell: {len(targets)} for {tokens.n_cells} cells."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be between 0 and 1, got {alpha}.")
    options: dict[str, Any] = {"alpha": float(alpha), "use_ctm": bool(use_ctm), "temperature": temperature}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            text_inputs = model.tokenize_texts(list(texts))
            text_emb = model.encode_texts(text_inputs)
        with torch.enable_grad():
            return [
                _one_cell(model, tokens, i, np.asarray(t, dtype=np.int64), text_inputs, text_emb, options)
                for i, t in enumerate(targets)
            ]
    finally:
        model.train(was_training)
