"""What scelmo's scvi-tools models share: safe save/load, data registration, seeding, summary.

:class:`ScviModel` sits between :class:`scvi.model.base.BaseModelClass` and
:class:`~scelmo.models.ElmoAdapter` / :class:`~scelmo.models.ElmoPerturbation`. It brings the
pickle-free ``save``/``load`` of :mod:`scelmo.models._scvi_persistence` and registers an
expression layer plus categorical ``obs`` columns after the checks of
:mod:`scelmo.models._scvi_inputs`, so both models refuse the same bad input the same way.
Needs torch and scvi-tools (import it lazily, see :mod:`scelmo.models._lazy`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass

from ._scvi_inputs import check_obs_key, model_expression
from ._scvi_persistence import SafePersistence


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by ``seed``, restoring its state afterwards.

    Examples
    --------
    >>> import torch
    >>> from scelmo.models._scvi_base import seeded
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> with seeded(0):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class ScviModel(SafePersistence, BaseModelClass):
    """Base of scelmo's scvi-tools models (not instantiated itself).

    Subclasses set ``_model_summary_string`` in ``__init__`` and call :meth:`_register_anndata`
    from their ``setup_anndata``.

    Examples
    --------
    >>> from scelmo.models import ElmoAdapter  # doctest: +SKIP
    >>> from scelmo.models._scvi_base import ScviModel  # doctest: +SKIP
    >>> issubclass(ElmoAdapter, ScviModel)  # doctest: +SKIP
    True
    """

    _model_summary_string: str

    def __repr__(self) -> str:
        trained = "trained" if self.is_trained_ else "not trained"
        return f"{self._model_summary_string} ({trained})"

    @property
    def var_names(self) -> pd.Index:
        """The genes of the model (its expression columns), in order."""
        return pd.Index(np.asarray(self.get_var_names(), dtype=object).astype(str))

    @property
    def layer(self) -> str | None:
        """The expression layer the model was set up with (``None``: ``adata.X``)."""
        return self.registry_["setup_args"].get("layer")

    @classmethod
    def _register_anndata(
        cls,
        adata: AnnData,
        setup_method_args: dict,
        *,
        layer: str | None,
        categorical: Sequence[tuple[str, str | None, str]],
        **kwargs: Any,
    ) -> None:
        """Check and register the expression ``layer`` and ``(registry key, obs column, argument name)`` columns."""
        for _, key, what in categorical:
            check_obs_key(adata, key, what)
        model_expression(adata, layer)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            *(CategoricalObsField(registry_key, key) for registry_key, key, _ in categorical),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _categories(self, registry_key: str) -> pd.Index:
        """The categories of a registered ``obs`` column, in their code order."""
        state = self.registry_["field_registries"][registry_key]["state_registry"]
        return pd.Index(state["categorical_mapping"])

    def _training_adata(self) -> AnnData:
        """The model's AnnData, or an error saying a model loaded without one cannot train."""
        if self.adata is None:
            raise ValueError("This model was loaded without AnnData; load it with `adata` to train it.")
        return self.adata
