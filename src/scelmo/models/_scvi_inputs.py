"""What scelmo's scvi-tools models read from an AnnData: obs columns, the genes, the expression.

Shared by :class:`~scelmo.models.ElmoAdapter` and :class:`~scelmo.models.ElmoPerturbation`
(and their torch-free helpers), so both say the same thing about the same bad input. Importing
it needs neither torch nor scvi-tools.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from scelmo._anndata import Expression, expression_matrix
from scelmo._checks import check_matrix, check_values

#: The models read ``adata.X`` or a layer (scvi-tools' fields cannot read ``adata.raw``).
_RAW_TO_LAYER = (
    "These models read adata.X or a layer, not adata.raw: copy it into a layer "
    "(`adata.layers['log1p'] = adata.raw.X`) and pass `layer='log1p'`."
)


def check_obs_key(adata: AnnData, key: str | None, what: str) -> None:
    """Refuse ``key`` when it is not a column of ``adata.obs`` (``None`` passes).

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from scelmo.models._scvi_inputs import check_obs_key
    >>> adata = ad.AnnData(np.ones((1, 1)), obs=pd.DataFrame({"cell_type": ["T"]}, index=["c0"]))
    >>> check_obs_key(adata, "donor", "batch_key")
    Traceback (most recent call last):
    ...
    KeyError: "batch_key 'donor' is not a column of adata.obs; available columns: ['cell_type']."
    """
    if key is not None and key not in adata.obs:
        raise KeyError(
            f"{what} {key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
        )


def model_expression(adata: AnnData, layer: str | None, *, check: bool = True) -> Expression:
    """``adata.layers[layer]`` or ``adata.X``, checked to hold counts or log-expression.

    Parameters
    ----------
    adata
        The cells.
    layer
        The layer the model was set up with (``None``: ``adata.X``).
    check
        Check every value (non-negative and finite); ``False`` when the caller checks the
        blocks it reads anyway.

    Returns
    -------
    The :class:`scelmo._anndata.Expression` (``use_raw`` is never taken).

    Raises
    ------
    KeyError
        If ``layer`` is not a layer of ``adata``.
    ValueError
        If the matrix holds NaN, infinite or negative values (scaled data).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo.models._scvi_inputs import model_expression
    >>> model_expression(ad.AnnData(np.ones((2, 3))), None).where
    'adata.X'
    """
    expression = expression_matrix(adata, layer=layer, use_raw=False)
    if check:
        check_model_values(expression.matrix, where=expression.where)
    return expression


def check_model_values(matrix: object, *, where: str, rows: int | None = None) -> None:
    """:func:`scelmo._checks.check_matrix` (``"nonnegative"``) with a fix these models accept.

    ``rows`` names the row offset of a block (``matrix`` is then one block of a larger matrix).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.models._scvi_inputs import check_model_values
    >>> check_model_values(np.array([[0.0, -1.0]]), where="adata.X")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: adata.X has negative values... These models read adata.X or a layer, not adata.raw: ...
    """
    if rows is None:
        check_matrix(matrix, where=where, require="nonnegative", fix=_RAW_TO_LAYER)
    else:
        check_values(matrix, start=rows, where=where, require="nonnegative", fix=_RAW_TO_LAYER)


def check_same_genes(
    var_names: Sequence[str] | pd.Index, model_genes: Sequence[str] | pd.Index, what: str
) -> None:
    """Refuse data whose genes are not the model's, in the model's order.

    Examples
    --------
    >>> from scelmo.models._scvi_inputs import check_same_genes
    >>> check_same_genes(["A", "B"], ["A", "B"], "the model")
    >>> check_same_genes(["A"], ["A", "B"], "the model")
    Traceback (most recent call last):
    ...
    ValueError: adata has other genes than the model (1 vs 2; 1 of the model's are absent, e.g. ['B']). Subset and reorder it with adata[:, model.var_names].
    """
    ours = pd.Index(model_genes).astype(str)
    theirs = pd.Index(var_names).astype(str)
    if len(theirs) == len(ours) and (theirs == ours).all():
        return
    missing = ours.difference(theirs)
    raise ValueError(
        f"adata has other genes than {what} ({len(theirs)} vs {len(ours)}; {len(missing)} of the model's are "
        f"absent, e.g. {missing[:3].tolist()}). Subset and reorder it with adata[:, model.var_names]."
    )
