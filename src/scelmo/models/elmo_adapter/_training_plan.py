"""Lightning training plan of the scELMo adapter, with kNN validation that keeps the best weights.

Every validation round (every ``check_val_every_n_epoch`` epochs) embeds the training cells
and the validation cells with the current weights, classifies each validation cell by a cosine
``k``-NN majority vote among the training cells, and records the accuracy and macro-F1 of
that vote and of the model's linear classifier on the same cells (logged as
``validation_knn_accuracy`` and so on). The weights of the round with the best ``select_on``
score (scELMo: the kNN accuracy; the latest of equally good rounds) are kept in memory and put
back when training ends, so the trained model is the best one seen (the original code recorded
the best model and then used the last one). With ``patience``, training stops after that many
rounds without improvement. ``class_weights`` weight the cross-entropy per class.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Literal

import lightning.pytorch as pl
import torch

from scelmo._neighbors import knn_accuracy, knn_vote  # noqa: F401 (knn_accuracy: exported by the package)

from ._module import ElmoAdapterModule

X_KEY = "X"
LABELS_KEY = "labels"
BATCH_KEY = "batch"

SelectOn = Literal["knn_accuracy", "knn_macro_f1", "classifier_accuracy", "classifier_macro_f1"]
SELECT_ON: tuple[str, ...] = ("knn_accuracy", "knn_macro_f1", "classifier_accuracy", "classifier_macro_f1")


def macro_f1(predicted: torch.Tensor, truth: torch.Tensor, n_labels: int) -> float:
    """Macro-averaged F1 over the classes present in ``truth`` or ``predicted`` (as scikit-learn).

    Examples
    --------
    >>> import torch
    >>> from scelmo.models.elmo_adapter._training_plan import macro_f1
    >>> macro_f1(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 2]), 3)  # F1 1, 2/3, 0
    0.5555555555555555
    """
    predicted, truth = predicted.cpu().long(), truth.cpu().long()
    true_positive = torch.bincount(truth[predicted == truth], minlength=n_labels).double()
    n_true = torch.bincount(truth, minlength=n_labels).double()
    n_predicted = torch.bincount(predicted, minlength=n_labels).double()
    present = (n_true + n_predicted) > 0
    if not bool(present.any()):
        return 0.0
    f1 = 2 * true_positive / (n_true + n_predicted).clamp(min=1)
    return float(f1[present].mean())


class ElmoAdapterTrainingPlan(pl.LightningModule):
    """Trains an :class:`ElmoAdapterModule` with Adam; keeps the round with the best validation score.

    Parameters
    ----------
    module
        The adapter module.
    lr
        Adam learning rate (scELMo: 1e-3).
    weight_decay
        Adam weight decay.
    n_neighbors
        ``k`` of the validation kNN vote (scELMo: 10).
    reference_batches
        A callable returning an iterable of ``(x, labels)`` tensors of the training cells, in
        fixed order; the kNN reference of every validation round.
    patience
        Stop after this many validation rounds without a better ``select_on`` score (``None``:
        never).
    select_on
        ``"knn_accuracy"``, ``"knn_macro_f1"``, ``"classifier_accuracy"`` or
        ``"classifier_macro_f1"``: the validation score that picks the kept round.
    class_weights
        One weight per label for the cross-entropy (``None``: all cells alike).

    Examples
    --------
    >>> from scelmo.models.elmo_adapter._training_plan import ElmoAdapterTrainingPlan  # doctest: +SKIP
    >>> plan = ElmoAdapterTrainingPlan(model.module, reference_batches=batches)  # doctest: +SKIP
    """

    def __init__(
        self,
        module: ElmoAdapterModule,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        n_neighbors: int = 10,
        reference_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None,
        patience: int | None = None,
        select_on: SelectOn = "knn_accuracy",
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if select_on not in SELECT_ON:
            choices = ", ".join(map(repr, SELECT_ON))
            raise ValueError(f"`select_on` must be one of {choices}, got {select_on!r}.")
        self.select_on = select_on
        self.class_weights = class_weights
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_neighbors = n_neighbors
        self.reference_batches = reference_batches
        self.patience = patience
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_classifier: float | None = None
        self.best_scores: dict[str, float] | None = None
        self.history: dict[str, list[tuple[int, float]]] = {name: [] for name in SELECT_ON}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.knn_history: list[tuple[int, float]] = []
        self.classifier_history: list[tuple[int, float]] = []
        self._rounds_without_gain = 0
        self._val_z: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self._val_predicted: list[torch.Tensor] = []

    @staticmethod
    def _unpack(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = batch[X_KEY].float()
        labels = batch[LABELS_KEY].view(-1).long()
        batch_index = batch[BATCH_KEY].view(-1).long() if BATCH_KEY in batch else None
        return x, labels, batch_index

    def _log_parts(self, out: dict[str, torch.Tensor], stage: str, n: int) -> None:
        for key in ("loss", "classification", "triplet", "batch", "accuracy"):
            self.log(f"{stage}_{key}", out[key].detach(), on_step=False, on_epoch=True, batch_size=n)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a minibatch."""
        x, labels, batch_index = self._unpack(batch)
        out = self.module.loss(x, labels, batch_index, class_weights=self.class_weights)
        self._log_parts(out, "train", x.shape[0])
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation losses; keeps the embeddings for the kNN accuracy."""
        x, labels, batch_index = self._unpack(batch)
        out = self.module.loss(x, labels, batch_index, class_weights=self.class_weights)
        self._log_parts(out, "validation", x.shape[0])
        self._val_z.append(out["z"].detach())
        self._val_labels.append(labels)
        self._val_predicted.append(self.module.classify(out["z"].detach()).argmax(dim=1))

    @torch.no_grad()
    def _reference_embeddings(
        self, reference_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.module.adapted_gene_table()
        zs, labels = [], []
        for x, y in reference_batches():
            zs.append(self.module.embed(x.to(self.module.device).float(), table))
            labels.append(y.to(self.module.device).view(-1).long())
        return torch.cat(zs), torch.cat(labels)

    def on_validation_epoch_end(self) -> None:
        """Scores (kNN and classifier) of the validation cells; remember the best weights."""
        if not self._val_z or self.reference_batches is None or self.trainer.sanity_checking:
            self._val_z, self._val_labels, self._val_predicted = [], [], []
            return
        reference, reference_labels = self._reference_embeddings(self.reference_batches)
        truth = torch.cat(self._val_labels)
        n_labels = self.module.n_labels
        votes = knn_vote(
            torch.cat(self._val_z), reference, reference_labels, k=self.n_neighbors, n_labels=n_labels
        )
        predicted = {
            "knn": votes.argmax(dim=1),
            "classifier": torch.cat(self._val_predicted),
        }
        self._val_z, self._val_labels, self._val_predicted = [], [], []
        scores = {}
        for readout, labels in predicted.items():
            scores[f"{readout}_accuracy"] = float((labels.cpu() == truth.cpu()).double().mean())
            scores[f"{readout}_macro_f1"] = macro_f1(labels, truth, n_labels)
        epoch = int(self.current_epoch) + 1
        for name, value in scores.items():
            self.history[name].append((epoch, value))
        self.knn_history.append((epoch, scores["knn_accuracy"]))
        self.classifier_history.append((epoch, scores["classifier_accuracy"]))
        for name in ("knn_accuracy", "knn_macro_f1", "classifier_macro_f1"):
            self.log(f"validation_{name}", scores[name], on_step=False, on_epoch=True)
        score = scores[self.select_on]
        improved = self.best_score is None or score > self.best_score
        if improved or score == self.best_score:
            # Ties go to the later round: a model trained longer.
            self.best_score = score
            self.best_scores = scores
            self.best_epoch = epoch
            self.best_classifier = scores["classifier_accuracy"]
            self.best_state = copy.deepcopy(self.module.state_dict())
        self._rounds_without_gain = 0 if improved else self._rounds_without_gain + 1
        if self.patience is not None and self._rounds_without_gain >= self.patience:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        """Put back the weights of the best validation round."""
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the trainable parameters."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
