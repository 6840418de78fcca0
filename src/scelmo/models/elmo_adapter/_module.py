"""The scELMo adapter as a torch module: adapted gene table, cell embedding, classifier, losses.

``E' = Linear(n_hidden -> n_latent)(ReLU(Linear(d -> n_hidden)(E)))`` maps the frozen gene table
``E`` (genes x d, aligned to the model's variables) to an adapted table; a cell's embedding is
the expression-weighted average of its genes' adapted vectors (``"wa"``: weights ``x / x.sum()``,
``"aa"``: ``x / n_genes``), and ``Linear(n_latent -> n_labels)`` classifies it. The loss is
cross-entropy plus ``triplet_weight`` times a triplet margin loss over all triplets of the
minibatch on L2-normalised embeddings (scELMo: weight 100, margin 0.05).

Our extension ``gene_residual``: a free, zero-initialised vector ``R_g`` per gene is added to
the adapted table, ``E' = MLP(E) + R``. With it the cell embedding ``w(x) @ E'`` can be any
rank-``n_latent`` linear map of the expression, so the model can learn what the text
embeddings do not say (a superset of a linear classifier on the same input); at
initialisation it is exactly scELMo's adapter. ``gene_dropout`` (also ours) sets each
expression value to zero with that probability during training (inverted dropout: the others are
scaled by ``1 / (1 - p)``), a regulariser against memorising a small training set.

Batch correction is our extension, two ways:

- ``"adversarial"``: a gradient-reversal layer feeds the embedding to a small batch classifier,
  so the adapter learns embeddings from which the batch cannot be predicted;
- ``"centroid"``: within each cell type of a minibatch, the mean (L2-normalised) embedding of
  every batch is pulled toward the type's mean over batches (a label-conditional, linear-kernel
  MMD), a plain penalty with no min-max game.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Mode = Literal["wa", "aa"]
BatchCorrection = Literal["adversarial", "centroid"] | None


def batch_centroid_loss(
    z: torch.Tensor, labels: torch.Tensor, batch: torch.Tensor, n_labels: int, n_batch: int
) -> torch.Tensor:
    """Squared distance of per-(label, batch) centroids to their label's centroid over batches.

    Embeddings are L2-normalised; only labels present in at least two batches of the minibatch
    count, and the result is the mean over their (label, batch) centroids (0 when none).

    Examples
    --------
    >>> import torch
    >>> from scelmo.models.elmo_adapter._module import batch_centroid_loss
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> float(batch_centroid_loss(z, torch.tensor([0, 0]), torch.tensor([0, 1]), 1, 2))
    0.5
    """
    unit = F.normalize(z, dim=1)
    group = labels * n_batch + batch
    counts = torch.bincount(group, minlength=n_labels * n_batch).to(unit.dtype)
    sums = torch.zeros(n_labels * n_batch, unit.shape[1], dtype=unit.dtype, device=unit.device)
    sums = sums.index_add(0, group, unit)
    present = (counts > 0).view(n_labels, n_batch)
    centroids = (sums / counts.clamp(min=1)[:, None]).view(n_labels, n_batch, -1)
    n_present = present.sum(dim=1)
    usable = n_present >= 2
    if not bool(usable.any()):
        return z.sum() * 0.0
    weights = present.to(unit.dtype)[..., None]
    label_mean = (centroids * weights).sum(dim=1) / n_present.clamp(min=1)[:, None].to(unit.dtype)
    spread = ((centroids - label_mean[:, None, :]) ** 2).sum(dim=-1) * present
    return spread[usable].sum() / present[usable].sum()


def triplet_margin_all(z: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Triplet margin loss over all ``(anchor, positive, negative)`` triplets of a minibatch.

    Distances are Euclidean between L2-normalised embeddings; the loss of a triplet is
    ``max(0, d(a, p) - d(a, n) + margin)`` and the result is the mean over triplets with a
    positive loss (0 when there is none), as the metric-learning implementation the paper used.

    All ``B^3`` triplets are summed exactly in ``O(B^2 log B)`` time and ``O(B^2)`` memory: for
    each anchor the negative distances are sorted once, and for each positive the negatives
    inside the margin are found by binary search and summed from a cumulative sum.

    Parameters
    ----------
    z
        Embeddings ``(B, dim)``.
    labels
        Integer labels ``(B,)``.
    margin
        The margin.

    Returns
    -------
    A scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from scelmo.models.elmo_adapter._module import triplet_margin_all
    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    >>> float(triplet_margin_all(z, torch.tensor([0, 0, 1]), margin=0.05))
    0.0
    """
    n = z.shape[0]
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool, device=z.device)
    if n < 3 or not positive.any() or bool(same.all()):
        return z.sum() * 0.0
    unit = F.normalize(z, dim=1)
    # Euclidean distance of unit vectors from their cosine, clamped away from 0 for the sqrt.
    dist = torch.sqrt(torch.clamp(2.0 - 2.0 * (unit @ unit.T), min=1e-12))
    # Per anchor, its negatives' distances in increasing order (non-negatives last, as inf).
    sorted_neg, _ = torch.sort(dist.masked_fill(same, float("inf")), dim=1)
    cumulative = torch.cumsum(sorted_neg, dim=1)
    threshold = dist + margin  # loss of (a, p, n) > 0  <=>  d(a, n) < d(a, p) + margin
    counts = torch.searchsorted(sorted_neg.detach(), threshold.detach())
    below = torch.gather(cumulative, 1, torch.clamp(counts - 1, min=0))
    active = positive & (counts > 0)
    per_pair = torch.where(active, counts.to(dist.dtype) * threshold - below, 0.0)
    n_active = counts[active].sum()
    if n_active == 0:
        return z.sum() * 0.0
    return per_pair.sum() / n_active


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


class ElmoAdapterModule(nn.Module):
    """Torch module of :class:`~scelmo.models.ElmoAdapter`.

    Parameters
    ----------
    gene_table
        ``(n_genes, d)`` gene embeddings aligned to the model's variables (zero rows where a
        variable has no embedding).
    matched
        ``(n_genes,)`` boolean mask of variables that have an embedding; the adapted vectors of
        the others are set to zero, so they add nothing to a cell (they still count in the
        ``"wa"`` weights, as in the original).
    n_labels
        Number of classes.
    n_batch
        Number of batches (used by batch correction only).
    n_hidden, n_latent
        Widths of the adapter MLP (scELMo: 64 and 32).
    mode
        ``"wa"`` or ``"aa"`` cell embedding.
    triplet_weight, triplet_margin
        Weight and margin of the triplet loss (scELMo: 100 and 0.05).
    batch_correction
        ``None``, ``"adversarial"`` or ``"centroid"`` (see the module docstring).
    batch_weight
        Strength of the batch correction: the scale of the reversed gradient, or the weight of
        the centroid penalty.
    normalize_latent
        Classify the L2-normalised embedding (see :meth:`classify`); ``False`` is scELMo's
        plain ``Linear(n_latent -> n_labels)`` on ``z``.
    gene_residual
        Add a trainable per-gene vector, initialised at zero, to the adapted table (our
        extension; every gene gets one, also genes without a text embedding).
    gene_dropout
        Probability of zeroing each expression value of a training minibatch (our extension;
        0 in scELMo). Inactive in evaluation mode.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scelmo.models.elmo_adapter._module import ElmoAdapterModule
    >>> module = ElmoAdapterModule(np.eye(4, 3), np.ones(4, bool), n_labels=2)
    >>> module.embed(torch.ones(5, 4)).shape
    torch.Size([5, 32])
    >>> with_residual = ElmoAdapterModule(np.eye(4, 3), np.ones(4, bool), n_labels=2, gene_residual=True)
    >>> tuple(with_residual.gene_residual.shape), float(with_residual.gene_residual.detach().abs().sum())
    ((4, 32), 0.0)
    """

    # Buffers, declared for the type checker (nn.Module's attribute lookup is untyped).
    gene_table: torch.Tensor
    gene_mask: torch.Tensor

    def __init__(
        self,
        gene_table: np.ndarray,
        matched: np.ndarray,
        n_labels: int,
        *,
        n_batch: int = 1,
        n_hidden: int = 64,
        n_latent: int = 32,
        mode: Mode = "wa",
        triplet_weight: float = 100.0,
        triplet_margin: float = 0.05,
        batch_correction: BatchCorrection = None,
        batch_weight: float = 1.0,
        normalize_latent: bool = True,
        gene_residual: bool = False,
        gene_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in ("wa", "aa"):
            raise ValueError(f"`mode` must be 'wa' or 'aa', got {mode!r}.")
        table = torch.as_tensor(np.asarray(gene_table, dtype=np.float32))
        # Not persistent: the table is rebuilt from the model's gene embeddings when loading,
        # so a saved model holds it once.
        self.register_buffer("gene_table", table, persistent=False)
        self.register_buffer(
            "gene_mask", torch.as_tensor(np.asarray(matched, dtype=np.float32)), persistent=False
        )
        self.mode = mode
        self.n_labels = int(n_labels)
        self.triplet_weight = float(triplet_weight)
        self.triplet_margin = float(triplet_margin)
        if batch_correction not in (None, "adversarial", "centroid"):
            raise ValueError(
                f"`batch_correction` must be None, 'adversarial' or 'centroid', got {batch_correction!r}."
            )
        self.batch_correction = batch_correction
        self.batch_weight = float(batch_weight)
        self.n_batch = int(n_batch)
        self.normalize_latent = bool(normalize_latent)
        self.adapter = nn.Sequential(
            nn.Linear(table.shape[1], n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_latent)
        )
        self.classifier = nn.Linear(n_latent, n_labels)
        # Our extension: a free vector per gene added to the adapted table, zero at init so the
        # model starts as scELMo's adapter.
        self.gene_residual = nn.Parameter(torch.zeros(table.shape[0], n_latent)) if gene_residual else None
        if not 0 <= gene_dropout < 1:
            raise ValueError(f"`gene_dropout` must be in [0, 1), got {gene_dropout}.")
        self.gene_dropout = float(gene_dropout)
        self.adversary = (
            nn.Sequential(nn.Linear(n_latent, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_batch))
            if batch_correction == "adversarial"
            else None
        )

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def on_load(self, model: object, **kwargs: object) -> None:
        """Hook called by :meth:`scvi.model.base.BaseModelClass.load` (nothing to do)."""

    def adapted_gene_table(self) -> torch.Tensor:
        """``E'``: the adapted gene table ``(n_genes, n_latent)``.

        Rows of genes without a text embedding are zero, or only their residual with
        ``gene_residual``.
        """
        table = self.adapter(self.gene_table) * self.gene_mask[:, None]
        if self.gene_residual is not None:
            table = table + self.gene_residual
        return table

    def cell_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Weights of each gene in each cell: ``x / x.sum()`` (``wa``) or ``x / n_genes`` (``aa``)."""
        if self.mode == "aa":
            return x / x.shape[1]
        totals = x.sum(dim=1, keepdim=True)
        return torch.where(totals > 0, x / torch.where(totals > 0, totals, torch.ones_like(totals)), 0.0)

    def embed(self, x: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Cell embeddings ``(n_cells, n_latent)``; cells with no expression get zeros."""
        if table is None:
            table = self.adapted_gene_table()
        return self.cell_weights(x) @ table

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits of embeddings ``z``.

        With ``normalize_latent`` the classifier reads ``sqrt(n_latent) * z / |z|``: the same
        direction the triplet loss and the kNN vote look at, at unit scale per dimension.
        """
        if self.normalize_latent:
            z = F.normalize(z, dim=1) * np.sqrt(z.shape[1])
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embeddings ``z`` and class logits of a minibatch ``x`` (cells x genes)."""
        z = self.embed(x)
        return {"z": z, "logits": self.classify(z)}

    def loss(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        batch: torch.Tensor | None = None,
        *,
        class_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training loss and its parts for a minibatch.

        ``class_weights`` (one per label) weight the cross-entropy of each cell by its class
        (normalised by the minibatch's total weight, as :func:`torch.nn.functional.cross_entropy`).

        Returns a dict with ``loss`` (what is minimised), ``classification``, ``triplet``,
        ``batch`` (the batch-correction term, 0 without), ``accuracy`` and the embeddings ``z``.
        """
        if self.training and self.gene_dropout > 0:
            x = x * (torch.rand_like(x) >= self.gene_dropout) / (1.0 - self.gene_dropout)
        out = self.forward(x)
        z = out["z"]
        if class_weights is not None:
            class_weights = class_weights.to(device=out["logits"].device, dtype=out["logits"].dtype)
        classification = F.cross_entropy(out["logits"], labels, weight=class_weights)
        triplet = (
            triplet_margin_all(z, labels, self.triplet_margin) if self.triplet_weight > 0 else z.sum() * 0.0
        )
        loss = classification + self.triplet_weight * triplet
        batch_term = z.sum() * 0.0
        if self.batch_correction is not None:
            if batch is None:
                raise ValueError("Batch correction needs the batch of every cell.")
            if self.adversary is not None:
                # The adversary minimises its cross-entropy; the reversed gradient makes the
                # adapter maximise it.
                reversed_z = _GradientReversal.apply(z, self.batch_weight)
                batch_term = F.cross_entropy(self.adversary(reversed_z), batch)
                loss = loss + batch_term
            else:
                batch_term = batch_centroid_loss(z, labels, batch, self.n_labels, self.n_batch)
                loss = loss + self.batch_weight * batch_term
        accuracy = (out["logits"].argmax(dim=1) == labels).float().mean()
        return {
            "loss": loss,
            "classification": classification.detach(),
            "triplet": triplet.detach(),
            "batch": batch_term.detach(),
            "accuracy": accuracy.detach(),
            "z": z,
        }
