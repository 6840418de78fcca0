"""Torch module and training loop of :class:`~scelmo.models.ElmoPerturbation`.

The prediction for a perturbation of gene ``p`` with text embedding ``e_p`` is

``delta(p) = b + W phi((e_p - m) / s)``,

with ``phi = ReLU(Linear(hidden -> latent))(Dropout(ReLU(Linear(d -> hidden))))``, a per-gene
linear read-out ``W`` (genes x latent) and a bias ``b`` initialised to the mean change of the
training perturbations (the mean-shift baseline), so the network learns how a perturbation's
effect departs from the average one as a function of what the language model knows about the
perturbed gene. ``m`` and ``s`` centre and scale the embeddings (mean row and root mean square
of the stored table), so tables of any scale train alike. In the spirit of GEARS, where a
``Linear(d -> hidden)`` of the gene embedding replaces a learned gene embedding, but with no
gene graph: this is our own simple design.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F


class PerturbationModule(nn.Module):
    """Maps a perturbed gene's embedding to the expression change of every gene.

    Parameters
    ----------
    n_input
        Dimension of the gene embeddings.
    n_genes
        Number of measured genes (outputs).
    input_mean, input_scale
        Centre ``(n_input,)`` and scale (scalar) of the embeddings.
    n_hidden, n_latent
        Widths of the encoder.
    dropout
        Dropout after the first layer.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scelmo.models.perturbation._module import PerturbationModule
    >>> module = PerturbationModule(8, 5, np.zeros(8), 1.0)
    >>> module(torch.ones(3, 8)).shape
    torch.Size([3, 5])
    """

    # Buffers, declared for the type checker (nn.Module's attribute lookup is untyped).
    input_mean: torch.Tensor
    input_scale: torch.Tensor

    def __init__(
        self,
        n_input: int,
        n_genes: int,
        input_mean: np.ndarray,
        input_scale: float,
        *,
        n_hidden: int = 128,
        n_latent: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.as_tensor(np.asarray(input_mean, dtype=np.float32)))
        self.register_buffer("input_scale", torch.tensor(float(input_scale), dtype=torch.float32))
        self.encoder = nn.Sequential(
            nn.Linear(n_input, n_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_latent),
            nn.ReLU(),
        )
        self.decoder = nn.Linear(n_latent, n_genes)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def on_load(self, model: object, **kwargs: object) -> None:
        """Hook called by :meth:`scvi.model.base.BaseModelClass.load` (nothing to do)."""

    def set_mean_shift(self, mean_shift: np.ndarray) -> None:
        """Start from the mean-shift baseline: bias = mean training change, read-out ~ 0."""
        with torch.no_grad():
            self.decoder.bias.copy_(torch.as_tensor(np.asarray(mean_shift, dtype=np.float32)))
            self.decoder.weight.mul_(0.01)

    def encode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The latent representation of perturbations ``(n, n_latent)``."""
        return self.encoder((embeddings - self.input_mean) / self.input_scale)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Predicted expression changes ``(n, n_genes)``."""
        return self.decoder(self.encode(embeddings))


@dataclass
class FitResult:
    """What :func:`fit_perturbation_module` did: best epoch and loss, and the loss history."""

    best_epoch: int | None
    best_validation_loss: float | None
    history: pd.DataFrame


def fit_perturbation_module(
    module: PerturbationModule,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    max_epochs: int = 400,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int | None = None,
    check_val_every_n_epoch: int = 10,
    patience: int | None = 10,
) -> FitResult:
    """AdamW on the mean squared error; keeps (and restores) the weights of the best validation loss.

    The training set is one pseudo-bulk row per perturbation (tens to thousands of rows), so
    an epoch is one or a few optimiser steps; a plain loop, since a Lightning trainer's
    per-epoch overhead would cost several times the step itself.

    Parameters
    ----------
    module
        The module to train (in place).
    train_x, train_y, val_x, val_y
        Embeddings and changes of the training and validation perturbations.
    max_epochs
        Passes over the training perturbations.
    lr, weight_decay
        AdamW's settings.
    batch_size
        Perturbations per step (default all: full-batch).
    check_val_every_n_epoch
        Validation rounds happen every this many epochs.
    patience
        Stop after this many rounds without a better validation loss (``None``: never).

    Returns
    -------
    A :class:`FitResult`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scelmo.models.perturbation._module import PerturbationModule, fit_perturbation_module
    >>> module = PerturbationModule(4, 3, np.zeros(4), 1.0)
    >>> x, y = torch.randn(8, 4), torch.randn(8, 3)
    >>> fit_perturbation_module(module, x, y, x[:2], y[:2], max_epochs=20).best_epoch is not None
    True
    """
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(train_x)
    batch_size = batch_size or n
    best_loss: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    rounds_without_gain = 0
    records = []
    for epoch in range(1, max_epochs + 1):
        module.train()
        order = torch.randperm(n) if batch_size < n else torch.arange(n)
        total = 0.0
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.mse_loss(module(train_x[rows]), train_y[rows])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        record = {"epoch": epoch, "train_loss": total / n}
        if len(val_x) and epoch % check_val_every_n_epoch == 0:
            module.eval()
            with torch.no_grad():
                val_loss = float(F.mse_loss(module(val_x), val_y))
            record["validation_loss"] = val_loss
            if best_loss is None or val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(module.state_dict())
                rounds_without_gain = 0
            else:
                rounds_without_gain += 1
        records.append(record)
        if patience is not None and rounds_without_gain >= patience:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return FitResult(best_epoch, best_loss, pd.DataFrame(records).set_index("epoch"))
