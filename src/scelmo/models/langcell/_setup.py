"""What ``LangCellCE.setup_anndata`` registers: where the tokens and labels of an AnnData are.

A small registry in the spirit of scvi-tools' ``setup_anndata``: one record, stored in
``adata.uns['_scelmo_langcell_ce']`` (and in a saved model's settings), read back by the model.
Reading the tokens goes through :mod:`scelmo._anndata` (tokenizing the counts if they are
absent), so the model itself sees only :class:`~scelmo.cell_tokens.CellTokens` and label codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scelmo._anndata import cell_tokens, tokenize_into

if TYPE_CHECKING:
    from anndata import AnnData

    from scelmo.cell_tokens import CellTokens

#: Key of the record in ``adata.uns``.
SETUP_KEY = "_scelmo_langcell_ce"


def label_column(adata: AnnData, labels_key: str) -> pd.Series:
    """``adata.obs[labels_key]``, or a KeyError that lists the columns.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from scelmo.models.langcell._setup import label_column
    >>> adata = ad.AnnData(np.zeros((2, 1)), obs=pd.DataFrame({"y": ["a", "b"]}, index=["c0", "c1"]))
    >>> label_column(adata, "y").tolist()
    ['a', 'b']
    """
    if labels_key not in adata.obs.columns:
        raise KeyError(f"adata.obs has no column {labels_key!r}; it has {list(adata.obs.columns)}.")
    return adata.obs[labels_key]


@dataclass(frozen=True)
class TokenSetup:
    """Where an AnnData's tokens and labels are, and how to tokenize its counts when the tokens are absent.

    Attributes
    ----------
    tokens_key
        Key of the tokens in ``adata.obsm``.
    labels_key
        Column of ``adata.obs`` with the labels (``None``: cells only predicted on).
    labels
        The classes, in the order of a classifier's outputs.
    layer, use_raw, gene_id_key
        Where the counts and gene ids are (see :func:`scelmo.pp.tokenize`).

    Examples
    --------
    >>> from scelmo.models.langcell._setup import TokenSetup
    >>> TokenSetup.from_dict({"labels_key": "", "tokens_key": "langcell_tokens", "labels": []}).labels_key is None
    True
    """

    tokens_key: str = "langcell_tokens"
    labels_key: str | None = None
    labels: tuple[str, ...] = ()
    layer: str | None = None
    use_raw: bool = False
    gene_id_key: str | None = None

    @classmethod
    def register(
        cls,
        adata: AnnData,
        *,
        labels_key: str | None,
        tokens_key: str,
        layer: str | None,
        use_raw: bool,
        gene_id_key: str | None,
    ) -> TokenSetup:
        """Check the labels, tokenize when the tokens are absent, and store the record in ``adata.uns``.

        Examples
        --------
        >>> import anndata as ad, numpy as np, pandas as pd
        >>> from scelmo.cell_tokens import CellTokens
        >>> from scelmo.models.langcell._setup import TokenSetup
        >>> adata = ad.AnnData(np.zeros((3, 1)), obs=pd.DataFrame({"y": ["b", "a", None]}, index=["c0", "c1", "c2"]))
        >>> adata.obsm["langcell_tokens"] = CellTokens(np.array([0, 2, 3, 5]), np.array([5, 7, 9, 4, 6])).to_sparse()
        >>> TokenSetup.register(adata, labels_key="y", tokens_key="langcell_tokens", layer=None, use_raw=False,
        ...                     gene_id_key=None).labels
        ('a', 'b')
        """
        values = None if labels_key is None else label_column(adata, labels_key)
        if tokens_key not in adata.obsm:
            tokenize_into(adata, layer=layer, use_raw=use_raw, gene_id_key=gene_id_key, key_added=tokens_key)
        labels: list[str] = []
        if values is not None:
            if isinstance(values.dtype, pd.CategoricalDtype):
                labels = [str(c) for c in values.cat.categories if (values == c).any()]
            else:
                labels = sorted({str(v) for v in values.dropna()})
        setup = cls(tokens_key, labels_key, tuple(labels), layer, bool(use_raw), gene_id_key)
        adata.uns[SETUP_KEY] = setup.to_dict()
        return setup

    @classmethod
    def read(cls, adata: AnnData) -> TokenSetup:
        """The record of ``adata``; a ValueError that says to call ``setup_anndata`` if it has none.

        Examples
        --------
        >>> import anndata as ad, numpy as np
        >>> from scelmo.models.langcell._setup import TokenSetup
        >>> TokenSetup.read(ad.AnnData(np.zeros((1, 1))))
        Traceback (most recent call last):
        ...
        ValueError: This AnnData is not set up for LangCellCE: call scelmo.models.LangCellCE.setup_anndata(adata, labels_key=...) first.
        """
        values = adata.uns.get(SETUP_KEY)
        if values is None:
            raise ValueError(
                "This AnnData is not set up for LangCellCE: call "
                "scelmo.models.LangCellCE.setup_anndata(adata, labels_key=...) first."
            )
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TokenSetup:
        """The record from its stored form (empty strings for ``None``, as ``.h5ad`` stores them).

        Examples
        --------
        >>> from scelmo.models.langcell._setup import TokenSetup
        >>> TokenSetup.from_dict({"labels_key": "y", "labels": ["a", "b"], "layer": ""}).layer is None
        True
        """
        return cls(
            tokens_key=str(values.get("tokens_key") or "langcell_tokens"),
            labels_key=values.get("labels_key") or None,
            labels=tuple(str(c) for c in values.get("labels", ())),
            layer=values.get("layer") or None,
            use_raw=bool(values.get("use_raw", False)),
            gene_id_key=values.get("gene_id_key") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form: strings, lists and booleans only (``.h5ad`` has no ``None``).

        Examples
        --------
        >>> from scelmo.models.langcell._setup import TokenSetup
        >>> TokenSetup(labels_key="y", labels=("a", "b")).to_dict()["layer"]
        ''
        """
        values = asdict(self)
        values["labels"] = list(self.labels)
        for key in ("labels_key", "layer", "gene_id_key"):
            values[key] = values[key] or ""
        return values

    def tokens(self, adata: AnnData) -> CellTokens:
        """The cells' tokens, tokenized from the counts as set up when ``adata.obsm`` lacks them.

        Examples
        --------
        >>> import anndata as ad, numpy as np, pandas as pd
        >>> from scelmo.cell_tokens import CellTokens
        >>> from scelmo.models.langcell._setup import TokenSetup
        >>> adata = ad.AnnData(np.zeros((3, 1)), obs=pd.DataFrame({"y": ["b", "a", None]}, index=["c0", "c1", "c2"]))
        >>> adata.obsm["langcell_tokens"] = CellTokens(np.array([0, 2, 3, 5]), np.array([5, 7, 9, 4, 6])).to_sparse()
        >>> TokenSetup().tokens(adata).lengths.tolist()
        [2, 1, 2]
        """
        if self.tokens_key not in adata.obsm and (self.layer or self.use_raw or self.gene_id_key):
            tokenize_into(
                adata,
                layer=self.layer,
                use_raw=self.use_raw,
                gene_id_key=self.gene_id_key,
                key_added=self.tokens_key,
            )
        return cell_tokens(adata, self.tokens_key)

    def labelled(self, adata: AnnData) -> tuple[np.ndarray, np.ndarray]:
        """The cells with one of :attr:`labels` and their class codes.

        Examples
        --------
        >>> import anndata as ad, numpy as np, pandas as pd
        >>> from scelmo.cell_tokens import CellTokens
        >>> from scelmo.models.langcell._setup import TokenSetup
        >>> adata = ad.AnnData(np.zeros((3, 1)), obs=pd.DataFrame({"y": ["b", "a", None]}, index=["c0", "c1", "c2"]))
        >>> adata.obsm["langcell_tokens"] = CellTokens(np.array([0, 2, 3, 5]), np.array([5, 7, 9, 4, 6])).to_sparse()
        >>> cells, codes = TokenSetup(labels_key="y", labels=("a", "b")).labelled(adata)
        >>> cells.tolist(), codes.tolist()
        ([0, 1], [1, 0])
        """
        values = label_column(adata, self.labels_key or "")
        known = {c: i for i, c in enumerate(self.labels)}
        cells = np.flatnonzero(np.asarray(values.notna()) & np.asarray(values.astype(str).isin(list(known))))
        if cells.size == 0:
            raise ValueError(
                f"No cell of adata.obs[{self.labels_key!r}] has one of the labels {list(self.labels)}."
            )
        return cells, np.array([known[str(v)] for v in values.iloc[cells]], dtype=np.int64)
