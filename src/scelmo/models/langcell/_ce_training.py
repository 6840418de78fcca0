"""Training LangCell-CE: the released ``LangCell-CE-annotation`` recipe, seeded and on any device.

AdamW (lr 5e-5, weight decay 0.001 on weights, none on biases and LayerNorms), a linear schedule
with 500 warm-up steps (at most 10% of the steps, see :func:`~scelmo.models.langcell._training.scaled_warmup`),
minibatches of 16 cells grouped by length, 20 epochs, gradients clipped to norm 1 (the Trainer's
default). The few-shot "linear probe" trains only the classifier (lr 5e-3, no warm-up); the
pooler keeps its random initialisation, as in the original, and the frozen encoder runs without
building a graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._optional import import_optional

from ._ce_module import classifier_logits, pad_token_id
from ._encode import check_token_ids
from ._training import (
    TrainingHistory,
    _epochs,
    decay_groups,
    length_grouped_batches,
    linear_schedule,
    scaled_warmup,
)

if TYPE_CHECKING:
    from torch import Tensor
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler
    from tqdm.auto import tqdm
    from transformers import BertForSequenceClassification

    from scelmo.cell_tokens import CellTokens

torch = import_optional("torch", "langcell", purpose="LangCellCE training")
F = torch.nn.functional


def _batch(
    module: BertForSequenceClassification, tokens: CellTokens, index: np.ndarray, cls_token_id: int
) -> tuple[Tensor, Tensor]:
    device = module.classifier.weight.device
    ids, mask = tokens.pad(
        index,
        prefix=cls_token_id,
        max_length=int(module.config.max_position_embeddings),
        pad_token_id=pad_token_id(module),
    )
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def _epoch(
    module: BertForSequenceClassification,
    tokens: CellTokens,
    y_all: Tensor,
    steps: tuple[Optimizer, LRScheduler],
    bar: tqdm,
    *,
    rng: np.random.Generator,
    options: dict[str, Any],
) -> tuple[float, int]:
    """One pass over the cells; the summed loss and the number of correct predictions."""
    optimizer, schedule = steps
    loss_sum, correct = 0.0, 0
    for index in length_grouped_batches(tokens.lengths, options["batch_size"], rng):
        ids, mask = _batch(module, tokens, index, options["cls_token_id"])
        y = y_all[torch.from_numpy(index).to(y_all.device)]
        logits = classifier_logits(module, ids, mask, frozen_encoder=options["linear_probe"])
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if options["max_grad_norm"] is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in module.parameters() if p.requires_grad], options["max_grad_norm"]
            )
        optimizer.step()
        schedule.step()
        loss_sum += loss.item() * len(index)
        correct += int((logits.argmax(-1) == y).sum())
        bar.update(1)
    return loss_sum, correct


def fit_classifier(
    module: BertForSequenceClassification,
    tokens: CellTokens,
    labels: np.ndarray,
    *,
    cls_token_id: int,
    epochs: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    weight_decay: float,
    max_grad_norm: float | None,
    linear_probe: bool,
    seed: int,
    progress: bool,
) -> tuple[TrainingHistory, int]:
    """Train ``module`` in place on the cells ``tokens`` with class codes ``labels``; left in evaluation mode.

    Returns
    -------
    The per-epoch loss, accuracy and learning rate, and the warm-up steps used.

    Examples
    --------
    >>> from scelmo.models.langcell._ce_training import fit_classifier
    >>> history, warmup = fit_classifier(module, tokens, labels, cls_token_id=25426, epochs=20, batch_size=16,
    ...                                  lr=5e-5, warmup_steps=500, weight_decay=0.001, max_grad_norm=1.0,
    ...                                  linear_probe=False, seed=0, progress=False)  # doctest: +SKIP
    """
    check_token_ids(tokens, int(module.config.vocab_size), cls_token_id=cls_token_id)
    device = module.classifier.weight.device
    y_all = torch.as_tensor(np.asarray(labels), device=device)
    for name, param in module.named_parameters():
        param.requires_grad_(not linear_probe or name.startswith("classifier."))
    optimizer = torch.optim.AdamW(decay_groups(module, weight_decay), lr=lr)
    rng = np.random.default_rng(seed)
    total = epochs * -(-tokens.n_cells // batch_size)
    warmup = scaled_warmup(warmup_steps, total)
    schedule = linear_schedule(optimizer, warmup, total)
    history = TrainingHistory(parts={"lr": []})
    options = {"batch_size": batch_size, "cls_token_id": cls_token_id, "linear_probe": linear_probe,
               "max_grad_norm": max_grad_norm}  # fmt: skip
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        module.train()
        try:
            for _, bar in _epochs(epochs, progress, total, "LangCellCE"):
                loss_sum, correct = _epoch(
                    module, tokens, y_all, (optimizer, schedule), bar, rng=rng, options=options
                )
                history.loss.append(loss_sum / tokens.n_cells)
                history.accuracy.append(correct / tokens.n_cells)
                history.parts["lr"].append(float(schedule.get_last_lr()[0]))
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}", acc=f"{history.accuracy[-1]:.2f}")
        finally:
            module.eval()
            for param in module.parameters():
                param.requires_grad_(True)
    return history, warmup
