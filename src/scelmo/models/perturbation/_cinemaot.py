"""CINEMA-OT (pertpy's ``Cinemaot``) on scELMo cell embeddings, an optional extra."""

from __future__ import annotations

from typing import Any

import numpy as np
from anndata import AnnData

from scelmo._anndata import check_key
from scelmo._logging import logger
from scelmo._optional import import_optional


def cinemaot(
    adata: AnnData,
    perturbation_key: str,
    control: str,
    *,
    use_rep: str = "X_elmo",
    n_components: int = 20,
    key_added: str | None = None,
    random_state: int = 0,
    **kwargs: Any,
) -> AnnData:
    """Run CINEMA-OT with the scELMo embedding in place of PCA (as the scELMo paper did).

    CINEMA-OT reads the first ``dim`` columns of ``obsm[use_rep]`` as if they were ordered
    principal components, so we first project ``obsm[use_rep]`` on its own ``n_components``
    principal components (stored in ``obsm[key_added]``, default ``use_rep + "_pca"``) and hand
    those to :meth:`pertpy.tools.Cinemaot.causaleffect`.

    Needs ``pip install pertpy`` (heavy: JAX and ott-jax), which scelmo does not install.
    pertpy 1.0.3 imports a function that statsmodels 0.15 removed: pin ``statsmodels<0.15``
    with it. Checked with pertpy 1.0.3: on PBMC 68k with 20 genes shifted in a random half of
    the cells, the 20 largest mean effects were exactly the 20 shifted genes.

    Parameters
    ----------
    adata
        Cells with ``obsm[use_rep]`` (e.g. from :func:`scelmo.tl.elmo_embed`) and the
        perturbation column; ``adata.X`` is the expression CINEMA-OT computes effects on.
    perturbation_key, control
        Column of ``adata.obs`` with the perturbation of each cell, and the control category.
    use_rep
        The cell embedding to use.
    n_components
        Principal components of the embedding passed on (CINEMA-OT's ``dim``).
    key_added
        Where the components go (default ``use_rep + "_pca"``).
    random_state
        Seed of the PCA and of CINEMA-OT.
    **kwargs
        Passed to ``Cinemaot().causaleffect`` (``thres``, ``smoothness``, ``eps``, ``solver``,
        ``preweight_label``, ...).

    Returns
    -------
    CINEMA-OT's AnnData of single-cell treatment effects (perturbed cells x genes;
    ``obsm["X_embedding"]``); CINEMA-OT also writes the confounder embedding to ``adata.obsm["cf"]``.

    Examples
    --------
    >>> import scelmo as se
    >>> from scelmo.models.perturbation import cinemaot
    >>> se.tl.elmo_embed(adata, table)  # doctest: +SKIP
    >>> effects = cinemaot(adata, "perturbation", "control", thres=0.5, smoothness=1e-5)  # doctest: +SKIP
    """
    pertpy = import_optional("pertpy", purpose="CINEMA-OT")
    if use_rep not in adata.obsm:
        raise KeyError(
            f"obsm[{use_rep!r}] not found; compute it with scelmo.tl.elmo_embed or pass `use_rep=`. "
            f"Available: {list(adata.obsm)}."
        )
    if perturbation_key not in adata.obs:
        raise KeyError(f"perturbation_key {perturbation_key!r} is not a column of adata.obs.")
    embedding = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    n_components = min(n_components, *embedding.shape)
    key_added = check_key(key_added) if key_added is not None else f"{use_rep}_pca"
    adata.obsm[key_added] = _pca(embedding, n_components, random_state)
    logger.info("cinemaot: added obsm[%r] (%d PCs of obsm[%r])", key_added, n_components, use_rep)
    return pertpy.tl.Cinemaot().causaleffect(
        adata,
        pert_key=perturbation_key,
        control=control,
        use_rep=key_added,
        dim=n_components,
        random_state=random_state,
        **kwargs,
    )


def _pca(embedding: np.ndarray, n_components: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return (
        PCA(n_components=n_components, random_state=random_state).fit_transform(embedding).astype(np.float32)
    )
