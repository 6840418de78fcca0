"""Training LangCell: few-shot fine-tuning of both encoders, and the pieces LangCell-CE shares.

Few-shot (Zhao et al., ICML 2024; the released ``fewshot.py``), for cells with labels among K
classes, each class with one text:

- the cell encoder (with ``cell_proj``) and the text encoder (with ``text_proj``) are trained,
  each with Adam (lr 1e-5); ``ctm_head`` is frozen;
- each minibatch of cells (12) is compared with the K class texts, embedded again at every step
  (the text encoder is being trained): ``loss = CE(cell_emb @ text_emb.T / 0.05, y) + CE(p, y)``,
  where ``p`` are the K cell-text matching probabilities of each cell (the published loss
  takes the probabilities as logits);
- dropout is active (training mode), 10 epochs.

The class texts are tokenised once, the cross-attention keys/values of a minibatch are
computed once for all K classes (the gradients are those of K separate passes), and
minibatches group cells of similar length (:func:`length_grouped_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._optional import import_optional
from scelmo.cell_tokens import CellTokens

from ._encode import check_token_ids

if TYPE_CHECKING:
    from torch import Tensor
    from torch import device as Device
    from torch.nn import Module
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LambdaLR
    from tqdm.auto import tqdm

    from ._network import LangCellNetwork

torch = import_optional("torch", "langcell", purpose="LangCell training")
F = torch.nn.functional

#: Number of minibatches in one "megabatch" whose cells are sorted by length (Hugging Face's
#: ``group_by_length`` uses the same 50).
MEGABATCH = 50


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *, megabatch: int = MEGABATCH
) -> list[np.ndarray]:
    """Minibatches of cells of similar length, in random order (Hugging Face's ``group_by_length``).

    The cells are shuffled, cut into megabatches of ``megabatch * batch_size`` cells, each
    megabatch is sorted by length and cut into minibatches; the minibatches are then shuffled.
    Padding is thus small while every epoch still sees the cells in a new random grouping.

    Parameters
    ----------
    lengths
        Length of every cell.
    batch_size
        Cells per minibatch.
    rng
        Random generator (the seed of the order).
    megabatch
        Minibatches per sorted group.

    Returns
    -------
    Index arrays, one per minibatch.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.models.langcell._training import length_grouped_batches
    >>> batches = length_grouped_batches(np.array([5, 100, 6, 101]), 2, np.random.default_rng(0))
    >>> sorted(sorted(b.tolist()) for b in batches)
    [[0, 2], [1, 3]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    lengths = np.asarray(lengths)
    order = rng.permutation(lengths.size)
    size = megabatch * batch_size
    batches = []
    for start in range(0, order.size, size):
        mega = order[start : start + size]
        mega = mega[np.argsort(-lengths[mega], kind="stable")]
        batches += [mega[i : i + batch_size] for i in range(0, mega.size, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def linear_schedule(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up from 0 to the learning rate over ``warmup_steps``, then linear decay to 0 at ``total_steps``.

    The schedule of Hugging Face's ``get_linear_schedule_with_warmup``.

    Examples
    --------
    >>> import torch
    >>> from scelmo.models.langcell._training import linear_schedule
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> schedule = linear_schedule(opt, warmup_steps=2, total_steps=4)
    >>> [round(schedule.lr_lambdas[0](s), 2) for s in range(5)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def scaled_warmup(warmup_steps: int, total_steps: int, max_fraction: float = 0.1) -> int:
    """The warm-up actually used: ``warmup_steps``, but at most ``max_fraction`` of all steps.

    The original's 500 warm-up steps were set for tens of thousands of cells; on a few hundred
    cells they would cover most of training (learning at a small rate throughout).

    Examples
    --------
    >>> from scelmo.models.langcell._training import scaled_warmup
    >>> scaled_warmup(500, 20_000), scaled_warmup(500, 1_250), scaled_warmup(0, 100)
    (500, 125, 0)
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}.")
    return int(min(warmup_steps, math.ceil(max_fraction * total_steps)))


def decay_groups(module: Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on weights, none on biases and LayerNorm weights (as Hugging Face's Trainer).

    Examples
    --------
    >>> import torch
    >>> from scelmo.models.langcell._training import decay_groups
    >>> groups = decay_groups(torch.nn.Linear(2, 2), 0.01)
    >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
    [(1, 0.01), (1, 0.0)]
    """
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _batch_tensors(
    model: LangCellNetwork, tokens: CellTokens, index: np.ndarray, device: Device
) -> tuple[Tensor, Tensor]:
    """Padded ``input_ids`` and ``attention_mask`` of some cells (``<cls>`` first), on ``device``."""
    ids, mask = tokens.pad(
        index,
        prefix=model.cls_token_id,
        max_length=model.cell_max_length,
        pad_token_id=model.cell_pad_token_id,
    )
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


@dataclass
class TrainingHistory:
    """Per-epoch training record.

    Attributes
    ----------
    loss
        Mean training loss of each epoch.
    accuracy
        Training accuracy of each epoch (on the minibatches, in training mode).
    parts
        Other per-epoch means (e.g. ``"loss_sim"``, ``"loss_ctm"``, ``"lr"``).

    Examples
    --------
    >>> from scelmo.models.langcell._training import TrainingHistory
    >>> TrainingHistory(loss=[1.0, 0.5], accuracy=[0.4, 0.9]).to_dict()["loss"]
    [1.0, 0.5]
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists, e.g. for JSON."""
        return {
            "loss": list(self.loss),
            "accuracy": list(self.accuracy),
            **{k: list(v) for k, v in self.parts.items()},
        }

    @classmethod
    def from_dict(cls, values: dict[str, Sequence[float]] | None) -> TrainingHistory:
        """Inverse of :meth:`to_dict`."""
        values = dict(values or {})
        loss = [float(v) for v in values.pop("loss", [])]
        accuracy = [float(v) for v in values.pop("accuracy", [])]
        return cls(loss, accuracy, {k: [float(x) for x in v] for k, v in values.items()})


def _epochs(n_epochs: int, progress: bool, total: int, desc: str) -> Iterator[tuple[int, tqdm]]:
    """Epoch numbers with one progress bar over all minibatches."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="batch", disable=not progress, desc=desc) as bar:
        for epoch in range(n_epochs):
            yield epoch, bar


def _few_shot_epoch(
    model: LangCellNetwork,
    tokens: CellTokens,
    batches: Iterable[np.ndarray],
    y_all: Tensor,
    text_inputs: dict[str, Tensor],
    optimizer: Optimizer,
    temperature: float,
    bar: tqdm,
) -> tuple[np.ndarray, int]:
    """One few-shot pass: summed (loss, loss_sim, loss_ctm) and the number of correct predictions."""
    device = model.device
    sums = np.zeros(3)
    correct = 0
    for index in batches:
        ids, mask = _batch_tensors(model, tokens, index, device)
        y = y_all[torch.from_numpy(index).to(device)]
        text_emb = model.encode_texts(text_inputs)
        cell_emb, hidden = model.encode_cells(ids, mask)
        sim = cell_emb @ text_emb.T / temperature
        match = model.ctm_match_probs(text_inputs, hidden, mask)
        loss_sim = F.cross_entropy(sim, y)
        loss_ctm = F.cross_entropy(match, y)
        loss = loss_sim + loss_ctm
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            score = sim.softmax(-1) + match.softmax(-1)
            correct += int((score.argmax(-1) == y).sum())
        sums += np.array([loss.item(), loss_sim.item(), loss_ctm.item()]) * len(index)
        bar.update(1)
    return sums, correct


def train_few_shot(
    model: LangCellNetwork,
    tokens: CellTokens,
    labels: np.ndarray,
    texts: Sequence[str],
    *,
    epochs: int = 10,
    batch_size: int = 12,
    lr: float = 1e-5,
    text_lr: float | None = None,
    temperature: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> TrainingHistory:
    """Few-shot fine-tuning of LangCell's cell and text encoders (see the module description).

    Parameters
    ----------
    model
        The :class:`~scelmo.models.LangCell` (trained in place, on its device; left in evaluation mode).
    tokens
        The training cells' tokens.
    labels
        Class index (0..K-1) of every cell.
    texts
        The K class texts.
    epochs, batch_size
        Passes over the cells and cells per step (10 and 12 as published).
    lr, text_lr
        Adam learning rates of the cell side (``cell_bert``, ``cell_proj``) and of the text
        side (``text_bert``, ``text_proj``); ``text_lr`` defaults to ``lr`` (1e-5 both, as published).
    temperature
        Of the similarity logits (0.05).
    seed
        Seed of the minibatch order and of dropout.
    progress
        Show a progress bar.

    Returns
    -------
    Per-epoch loss (``parts``: ``loss_sim``, ``loss_ctm``) and training accuracy (of the
    similarity-plus-CTM score with ``alpha = 0.5``, on the training minibatches).

    Examples
    --------
    >>> from scelmo.models.langcell._training import train_few_shot
    >>> history = train_few_shot(model, tokens, labels, texts, epochs=10)  # doctest: +SKIP
    """
    from ._config import TEMPERATURE

    labels = np.asarray(labels, dtype=np.int64)
    texts = list(texts)
    if labels.shape != (tokens.n_cells,):
        raise ValueError(f"labels must have one entry per cell ({tokens.n_cells}), got shape {labels.shape}.")
    if labels.size == 0:
        raise ValueError("No labelled cells to train on.")
    if labels.min() < 0 or labels.max() >= len(texts):
        raise ValueError(f"labels must be class indices in 0..{len(texts) - 1}.")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}.")
    check_token_ids(tokens, int(model.cell_bert.config.vocab_size), cls_token_id=model.cls_token_id)
    temperature = TEMPERATURE if temperature is None else float(temperature)
    device = model.device
    text_lr = lr if text_lr is None else text_lr

    # ctm_head stays as pretrained (it is in no optimizer in the original).
    model.ctm_head.requires_grad_(False)
    cell_params = [p for m in (model.cell_bert, model.cell_proj) for p in m.parameters()]
    text_params = [p for m in (model.text_bert, model.text_proj) for p in m.parameters()]
    for p in (*cell_params, *text_params):
        p.requires_grad_(True)
    # Two Adam optimizers in the original; one Adam with two groups is the same update.
    optimizer = torch.optim.Adam([{"params": cell_params, "lr": lr}, {"params": text_params, "lr": text_lr}])
    text_inputs = model.tokenize_texts(texts)  # once: the texts do not change, the encoder does
    y_all = torch.from_numpy(labels).to(device)
    rng = np.random.default_rng(seed)
    history = TrainingHistory(parts={"loss_sim": [], "loss_ctm": []})
    n_batches = -(-tokens.n_cells // batch_size)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model.train()
        model.ctm_head.eval()
        try:
            for _, bar in _epochs(epochs, progress, epochs * n_batches, "LangCell few-shot"):
                batches = length_grouped_batches(tokens.lengths, batch_size, rng)
                sums, correct = _few_shot_epoch(
                    model, tokens, batches, y_all, text_inputs, optimizer, temperature, bar
                )
                sums /= tokens.n_cells
                history.loss.append(float(sums[0]))
                history.parts["loss_sim"].append(float(sums[1]))
                history.parts["loss_ctm"].append(float(sums[2]))
                history.accuracy.append(correct / tokens.n_cells)
                bar.set_postfix(loss=f"{sums[0]:.3f}", acc=f"{history.accuracy[-1]:.2f}")
        finally:
            model.eval()
            model.ctm_head.requires_grad_(True)
    return history
