"""``ElmoPerturbation``: the expression change of an unseen single-gene perturbation from its gene's text embedding."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from scelmo._logging import logger
from scelmo.gene_embeddings import GeneEmbeddings
from scelmo.models._scvi_base import ScviModel, seeded
from scelmo.models._scvi_inputs import check_obs_key

from ._data import perturbation_shifts, split_perturbations
from ._module import PerturbationModule, fit_perturbation_module


class ElmoPerturbation(ScviModel):
    """Predict the mean expression change of a single-gene perturbation from the gene's embedding.

    Training data are cells labelled by the gene they perturb (CRISPR screens, Perturb-seq) and
    control cells. Each perturbation is summarised by its pseudo-bulk change
    ``mean(x | perturbation) - mean(x | control)``, and a small network learns
    ``change = b + W phi(e_p)`` from the text embedding ``e_p`` of the perturbed gene, with ``b``
    starting at the mean change of the training perturbations (the mean-shift baseline; see
    :mod:`scelmo.models.perturbation`). Because the input is the gene's embedding, the model
    predicts perturbations never seen in training, for any gene the table describes.

    This is our own simple design in the spirit of GEARS (which feeds gene embeddings to a
    graph network); :func:`~scelmo.models.perturbation.evaluate_perturbation_prediction` scores
    it against the mean-shift and a linear (ridge) baseline on held-out perturbations.

    Parameters
    ----------
    adata
        AnnData set up with :meth:`setup_anndata` (``None`` only when loading).
    gene_embeddings
        Gene table used for the perturbed genes; the rows of the data's genes and perturbed
        genes are kept with the model.
    n_hidden, n_latent, dropout
        Encoder widths and dropout.
    case_sensitive
        Match perturbation names to the table exactly (default) or case-insensitively.
    seed
        Seed of the weights, of the validation split and of the minibatch order.
    registry
        Used by :meth:`load` when no AnnData is given.

    Examples
    --------
    >>> import scelmo as se
    >>> se.models.ElmoPerturbation.setup_anndata(adata, perturbation_key="gene", control="control")  # doctest: +SKIP
    >>> model = se.models.ElmoPerturbation(adata, gene_embeddings=table)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> model.predict(["KLF1", "GATA1"])  # doctest: +SKIP
    """

    def __init__(
        self,
        adata: AnnData | None = None,
        gene_embeddings: GeneEmbeddings | None = None,
        *,
        n_hidden: int = 128,
        n_latent: int = 32,
        dropout: float = 0.1,
        case_sensitive: bool = True,
        seed: int = 0,
        registry: dict | None = None,
    ) -> None:
        if not isinstance(gene_embeddings, GeneEmbeddings):
            raise TypeError(
                "ElmoPerturbation needs `gene_embeddings`, a scelmo.GeneEmbeddings table, got "
                f"{type(gene_embeddings).__name__}."
            )
        super().__init__(adata, registry=registry)
        var_names = self.var_names
        wanted = var_names.union(pd.Index(self.perturbation_categories), sort=False)
        wanted = wanted.drop(self.control, errors="ignore")
        aligned = gene_embeddings.align(wanted, case_sensitive=case_sensitive, min_coverage=0.0)
        provenance = dict(gene_embeddings.provenance)
        provenance.setdefault("source_content_hash", gene_embeddings.content_hash)
        # Keep only what the model can use, keyed by the names it is asked for.
        gene_embeddings = GeneEmbeddings(
            wanted[aligned.matched], aligned.matrix[aligned.matched], provenance=provenance
        )
        vectors = gene_embeddings.vectors.astype(np.float64)
        input_mean = vectors.mean(axis=0)
        input_scale = float(np.sqrt(((vectors - input_mean) ** 2).sum(axis=1).mean())) or 1.0
        with seeded(seed):
            self.module = PerturbationModule(
                gene_embeddings.dim,
                len(var_names),
                input_mean,
                input_scale,
                n_hidden=n_hidden,
                n_latent=n_latent,
                dropout=dropout,
            )
        self.seed = seed
        self.case_sensitive = case_sensitive
        self.table = gene_embeddings
        self.control_mean_: np.ndarray | None = None
        self.train_perturbations_: list[str] = []
        self.validation_perturbations_: list[str] = []
        self.best_epoch_: int | None = None
        self._model_summary_string = (
            f"ElmoPerturbation: {len(var_names)} genes, table of {len(gene_embeddings)} genes x "
            f"{gene_embeddings.dim} dims, hidden {n_hidden}, latent {n_latent}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        perturbation_key: str | None = None,
        control: str | None = None,
        layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register the expression matrix and the perturbation labels of ``adata``.

        Parameters
        ----------
        adata
            Cells x genes, log-normalised expression (never scaled values).
        perturbation_key
            Column of ``adata.obs`` with the perturbed gene of each cell (a gene symbol, or the
            control category).
        control
            The category of control cells.
        layer
            Use ``adata.layers[layer]`` instead of ``adata.X``.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Examples
        --------
        >>> import scelmo as se
        >>> se.models.ElmoPerturbation.setup_anndata(adata, perturbation_key="gene", control="control")  # doctest: +SKIP
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if perturbation_key is None or control is None:
            raise ValueError("ElmoPerturbation.setup_anndata needs `perturbation_key` and `control`.")
        check_obs_key(adata, perturbation_key, "perturbation_key")
        if str(control) not in set(adata.obs[perturbation_key].astype(str)):
            raise ValueError(f"control {control!r} is not a category of obs[{perturbation_key!r}].")
        cls._register_anndata(
            adata,
            setup_method_args,
            layer=layer,
            categorical=[(REGISTRY_KEYS.LABELS_KEY, perturbation_key, "perturbation_key")],
            **kwargs,
        )

    # ---------------------------------------------------------------- helpers
    @property
    def control(self) -> str:
        """The control category."""
        return str(self.registry_["setup_args"]["control"])

    @property
    def perturbation_categories(self) -> list[str]:
        """Categories of the perturbation column at setup (control included)."""
        return [str(c) for c in self._categories(REGISTRY_KEYS.LABELS_KEY)]

    def _embeddings(
        self, genes: Sequence[str], table: GeneEmbeddings | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``genes`` from ``table`` (default the stored one) and a found mask."""
        table = self.table if table is None else table
        names = pd.Index([str(g) for g in genes])
        if len(names) == 0:
            return np.zeros((0, self.table.dim), np.float32), np.zeros(0, bool)
        try:
            aligned = table.align(names, case_sensitive=self.case_sensitive, min_coverage=0.0)
        except ValueError:  # none of the genes is in the table
            return np.zeros((len(names), table.dim), np.float32), np.zeros(len(names), bool)
        if aligned.matrix.shape[1] != self.table.dim:
            raise ValueError(
                f"The table has dimension {aligned.matrix.shape[1]}, the model {self.table.dim}."
            )
        return aligned.matrix, aligned.matched

    # --------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int = 400,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int | None = None,
        validation_size: float = 0.1,
        check_val_every_n_epoch: int = 10,
        early_stopping_patience: int | None = 10,
        min_cells: int = 1,
        seed: int | None = None,
    ) -> None:
        """Fit on the pseudo-bulk changes of the training perturbations (full-batch AdamW on the CPU).

        Parameters
        ----------
        max_epochs
            Passes over the training perturbations.
        lr, weight_decay
            AdamW's settings.
        batch_size
            Perturbations per step (default: all).
        validation_size
            Fraction of perturbations held out to pick the best epoch (0: keep the last).
        check_val_every_n_epoch
            Validation rounds happen every this many epochs.
        early_stopping_patience
            Stop after this many rounds without a better validation loss (``None``: never).
        min_cells
            Perturbations with fewer cells are left out.
        seed
            Seed of the split and minibatch order (default: the model's ``seed``).

        Examples
        --------
        >>> model.train(max_epochs=400)  # doctest: +SKIP
        """
        adata = self._training_adata()
        seed = self.seed if seed is None else seed
        shifts = perturbation_shifts(
            adata,
            self.registry_["setup_args"]["perturbation_key"],
            self.control,
            layer=self.layer,
            min_cells=min_cells,
        )
        embeddings, found = self._embeddings(shifts.perturbations, None)
        if not found.all():
            skipped = shifts.perturbations[~found]
            warnings.warn(
                f"{len(skipped)} perturbations have no gene embedding and are left out of training "
                f"(e.g. {skipped[:5].tolist()}).",
                UserWarning,
                stacklevel=2,
            )
        names = shifts.perturbations[found]
        if len(names) < 2:
            raise ValueError("At least two perturbations with a gene embedding are needed to train.")
        embeddings, targets = embeddings[found], shifts.shifts[found]
        if validation_size > 0:
            n_val = max(1, round(validation_size * len(names)))
            train_names, val_names = split_perturbations(names, n_val, seed)
        else:
            train_names, val_names = np.asarray(names), np.asarray([], dtype=object)
        position = pd.Index(names)
        train_rows = position.get_indexer(train_names)
        val_rows = position.get_indexer(val_names)
        self.module.set_mean_shift(targets[train_rows].mean(axis=0))
        as_tensor = lambda rows: torch.as_tensor(embeddings[rows], dtype=torch.float32)  # noqa: E731
        target = lambda rows: torch.as_tensor(targets[rows], dtype=torch.float32)  # noqa: E731
        with seeded(seed):
            fit = fit_perturbation_module(
                self.module,
                as_tensor(train_rows),
                target(train_rows),
                as_tensor(val_rows),
                target(val_rows),
                max_epochs=max_epochs,
                lr=lr,
                weight_decay=weight_decay,
                batch_size=batch_size,
                check_val_every_n_epoch=check_val_every_n_epoch,
                patience=early_stopping_patience,
            )
        self.is_trained_ = True
        self.history_ = {name: fit.history[[name]].dropna() for name in fit.history.columns}
        self.control_mean_ = shifts.control_mean
        self.train_perturbations_ = [str(n) for n in train_names]
        self.validation_perturbations_ = [str(n) for n in val_names]
        self.best_epoch_ = fit.best_epoch
        logger.info(
            "ElmoPerturbation: trained on %d perturbations (%d for validation), best epoch %s",
            len(train_names),
            len(val_names),
            fit.best_epoch,
        )

    # -------------------------------------------------------------- inference
    def predict(
        self,
        genes: Sequence[str] | None = None,
        *,
        gene_embeddings: GeneEmbeddings | None = None,
        kind: Literal["change", "expression"] = "change",
    ) -> pd.DataFrame:
        """Predicted expression change (or expression) for perturbations of ``genes``.

        Parameters
        ----------
        genes
            Perturbed genes (default: the training perturbations).
        gene_embeddings
            Table to look the genes up in (default: the rows kept with the model, i.e. the data's
            genes and perturbations); pass the full table to predict any gene it describes.
        kind
            ``"change"`` (from control) or ``"expression"`` (control mean plus change).

        Returns
        -------
        A DataFrame (perturbed genes x measured genes). Genes without an embedding raise a
        KeyError.

        Examples
        --------
        >>> model.predict(["KLF1"]).loc["KLF1"].sort_values().head()  # doctest: +SKIP
        """
        self._check_if_trained(warn=True)
        genes = (
            self.train_perturbations_ if genes is None else [genes] if isinstance(genes, str) else list(genes)
        )
        embeddings, found = self._embeddings(genes, gene_embeddings)
        if not found.all():
            missing = [g for g, ok in zip(genes, found, strict=True) if not ok][:5]
            raise KeyError(
                f"No gene embedding for {missing}; pass `gene_embeddings=` with a table that has them."
            )
        self.module.eval()
        with torch.no_grad():
            change = self.module(torch.as_tensor(embeddings, dtype=torch.float32, device=self.module.device))
        values = change.cpu().numpy().astype(np.float64)
        if kind == "expression":
            if self.control_mean_ is None:
                raise ValueError("The control mean is unknown: train the model first.")
            values = values + np.asarray(self.control_mean_)[None, :]
        elif kind != "change":
            raise ValueError(f"`kind` must be 'change' or 'expression', got {kind!r}.")
        return pd.DataFrame(
            values, index=pd.Index([str(g) for g in genes], name="perturbation"), columns=self.var_names
        )

    def get_latent_representation(
        self, genes: Sequence[str] | None = None, *, gene_embeddings: GeneEmbeddings | None = None
    ) -> np.ndarray:
        """The encoder's representation ``phi(e_p)`` of perturbations of ``genes``.

        Examples
        --------
        >>> model.get_latent_representation(["KLF1", "GATA1"]).shape  # doctest: +SKIP
        (2, 32)
        """
        self._check_if_trained(warn=True)
        genes = self.train_perturbations_ if genes is None else list(genes)
        embeddings, found = self._embeddings(genes, gene_embeddings)
        if not found.all():
            missing = [g for g, ok in zip(genes, found, strict=True) if not ok][:5]
            raise KeyError(f"No gene embedding for {missing}.")
        self.module.eval()
        with torch.no_grad():
            latent = self.module.encode(
                torch.as_tensor(embeddings, dtype=torch.float32, device=self.module.device)
            )
        return latent.cpu().numpy()
