"""Zero-shot annotation in the text-embedding space of a gene table (scELMo / GenePT).

Class texts are embedded by the encoder that built the gene table, so genes (rows of the
table), cells (``elmo_embed`` averages of gene rows) and classes share one space. Two scores:

``"genes"`` (default): a gene-space score.
    1. ``S[g, k]``: cosine of gene ``g``'s table vector to class ``k``'s text vector (the mean of
       the class's description vectors);
    2. contrast: ``S[g, k] - mean_k' S[g, k']``, so that only genes closer to this class than to
       the others count (``contrast=False`` keeps raw similarities); the text affinity
       ``A[g, k]`` is this value standardised over the genes of the table, per class;
    2b. with ``unspell`` (default), the ``10 * n_genes`` genes with the highest affinity to any
       class are rescored without the part of their vector that their bare symbol explains
       (the symbol is embedded by the same encoder and projected out), and the signature is
       chosen among them: a gene text begins with its symbol, which a general-domain encoder
       reads by its letters ("B cell" -> BAX, BLVRB, B9D1);
    3. with ``gene_mentions``, the genes the class's name and texts name (``"CD56+ NK"`` ->
       NCAM1, ``"CD3-negative"`` -> CD3D/E/G, see ``scelmo.annotation._gene_mentions``) add
       ``mention_weight * (d[g, k] - mean_k' d[g, k'])`` to ``A`` (``d`` = +1 named positive,
       -1 negative; the mean over classes is left out with ``contrast=False``);
    4. class signature: the ``n_genes`` genes with the highest ``A`` among the genes that vary
       over the cells (weight ``1/n_genes`` each), and each gene named negative with weight
       ``-1/n_genes``;
    5. cell score: weighted sum of standardised expression (per-gene z-score) of the signature
       genes; with ``scale``, each class score is then standardised over cells;
    6. ``refine`` rounds of anchored self-training (``scelmo.annotation._elmo_refine``): the
       cells most confidently assigned to a class (the top 30% by margin) add ``n_genes`` data
       genes (the most over-expressed in them among the genes that correlate positively with
       the class's text genes); the text genes keep at least half their weight, so no class
       can lose the genes its text selected; a class whose confident cells do not express its
       text genes above the other cells keeps its text signature. No labels are used;
    7. with ``rematch`` (off by default; after ``refine``), the refined signatures ("programs") are given to
       the classes one to one (Hungarian algorithm) by their agreement with the text:
       ``sum_g w_p[g] A0[g, k]`` (``A0``: the text affinity of step 2, ``w_p``: program ``p``'s
       signature) plus, with ``gene_mentions``, ``mention_weight`` times the mean of
       ``d[g, k] * D_p[g]`` over the genes class ``k`` names (``D_p``: the standardised
       difference in mean expression between program ``p``'s cells and the others);
    8. with ``abstain`` (off by default), label-free abstention against random signatures of the same
       expression levels (``scelmo.annotation._elmo_null``): a class whose text genes are not
       co-expressed more than random genes is absent (no cells), and a cell that does not
       express its best class's genes more than random genes is ``"unknown"``.
``"cell"``: cosine of the (centred, with ``centre``) ``elmo_embed`` cell embeddings to the
    class text vectors, as LangCell compares its cell and text embeddings.

Probabilities are ``softmax(score / temperature)``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._anndata import expression_matrix
from .._logging import logger
from .._matrix import iter_row_blocks
from ..gene_embeddings import GeneEmbeddings
from ._elmo_null import signature_null
from ._elmo_refine import anchored_refine, standardise_columns, top_genes

__all__ = ["class_vectors", "elmo_scores", "match_programs", "resolve_encoder", "softmax"]

Score = Literal["genes", "cell"]
#: Default significance level of the label-free abstention (see ``_elmo_null``).
ABSTAIN_LEVEL = 0.05
#: A cell abstains when its best class's score is not above the median of that class's random
#: signatures in the cell: it expresses the class's genes no more than random genes of their level.
CELL_LEVEL = 0.5
_CHUNK = 8192


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise ``softmax(scores / temperature)`` in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_zeroshot import softmax
    >>> softmax(np.array([[0.0, 0.0]]), 1.0).tolist()
    [[0.5, 0.5]]
    """
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")
    z = np.asarray(scores, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


# ------------------------------------------------------------------ encoder and provenance
def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def resolve_encoder(provenance: Mapping[str, Any], encoder: Any = None) -> Any:
    """The text encoder for class texts, checked against the gene table's provenance.

    Parameters
    ----------
    provenance
        The gene table's provenance (``GeneEmbeddings.provenance`` or
        ``adata.uns['X_elmo']['gene_table']``): ``encoder`` and ``model`` say what built it.
    encoder
        ``None``: recreate the table's encoder from its provenance. Otherwise anything
        :func:`scelmo.text.get_encoder` accepts; it must be the table's encoder.

    Returns
    -------
    A :class:`~scelmo.text.TextEncoder`.

    Raises
    ------
    ValueError
        When the encoder differs from the one recorded in the table, or nothing is recorded and
        no encoder was given.

    Examples
    --------
    >>> from scelmo.annotation._elmo_zeroshot import resolve_encoder
    >>> provenance = {"encoder": "sentence-transformers", "model": "sentence-transformers/all-MiniLM-L6-v2"}
    >>> resolve_encoder(provenance).model  # doctest: +SKIP
    'sentence-transformers/all-MiniLM-L6-v2'
    """
    from ..text import get_encoder
    from ..text.encoders import DEFAULT_LOCAL_MODEL

    table_encoder = provenance.get("encoder")
    table_model = provenance.get("model")
    if encoder is None:
        if not table_model:
            raise ValueError(
                "The gene table does not record which text encoder built it (no 'model' in its provenance), "
                "so class texts cannot be embedded in its space automatically. Pass encoder= the encoder "
                "that built the table (e.g. 'openai:text-embedding-ada-002' for GenePT's tables)."
            )
        if table_encoder == "openai":
            encoder = f"openai:{table_model}"
        elif table_model == DEFAULT_LOCAL_MODEL:
            encoder = "local"
        else:
            encoder = table_model
    resolved = get_encoder(encoder)
    params = resolved.params()
    if not table_model:
        warnings.warn(
            "The gene table does not record its text encoder; assuming it was built with "
            f"{params.get('encoder')} {params.get('model')!r}. Similarities are meaningless if it was not.",
            UserWarning,
            stacklevel=3,
        )
        return resolved
    used_model = str(params.get("model", ""))
    used_encoder = params.get("encoder")
    if not _same_model(used_model, str(table_model)) or (table_encoder and used_encoder != table_encoder):
        raise ValueError(
            f"The class texts would be embedded with {used_encoder} {used_model!r}, but the gene table was "
            f"built with {table_encoder} {table_model!r}: the two live in different spaces, so their "
            "similarities mean nothing. Pass encoder= the table's encoder (or leave it out), or rebuild "
            "the table with this encoder (scelmo.pp.build_gene_embeddings(..., encoder=...))."
        )
    return resolved


def class_vectors(
    encoder: Any,
    texts: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    *,
    cache: Any = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """One unit vector per class: the normalised mean of its texts' normalised embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.text import TextEncoder
    >>> from scelmo.annotation._elmo_zeroshot import class_vectors
    >>> class Fixed(TextEncoder):
    ...     name, model = "demo", "fixed"
    ...     def encode_batches(self, texts, *, progress=False):
    ...         yield np.arange(len(texts)), np.array([[1.0, 0.0] if "B" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
    >>> class_vectors(Fixed(), {"B": ["B cell"], "T": ["T cell", "T"]}, ["B", "T"], cache=False).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    from ..text import CachedEncoder, resolve_cache

    store = resolve_cache(cache, cache_dir)
    if store is not None:
        encoder = CachedEncoder(encoder, cache=store)
    flat = [t for c in classes for t in texts[c]]
    owner = np.repeat(np.arange(len(classes)), [len(texts[c]) for c in classes])
    vectors = np.asarray(encoder.encode(flat), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    out = np.zeros((len(classes), vectors.shape[1]))
    np.add.at(out, owner, vectors)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


class _Standardised:
    """Per-gene standardised expression ``(x - mean) / sd`` applied lazily to a (sparse) matrix."""

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix
        n_cells, n_genes = matrix.shape
        total = np.zeros(n_genes)
        squares = np.zeros(n_genes)
        for _, _, block in iter_row_blocks(matrix, _CHUNK):
            if sp.issparse(block):
                total += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
                squares += np.asarray(block.multiply(block).sum(axis=0, dtype=np.float64)).ravel()
            else:
                block = block.astype(np.float64)
                total += block.sum(axis=0)
                squares += (block * block).sum(axis=0)
        if not (np.isfinite(total).all() and np.isfinite(squares).all()):
            raise ValueError("The expression matrix contains NaN or infinite values; fix or drop them first.")
        self.n_cells = n_cells
        self.mean = total / max(n_cells, 1)
        var = np.maximum(squares / max(n_cells, 1) - self.mean**2, 0.0)
        sd = np.sqrt(var)
        #: Genes that are not constant over the cells (the only ones that can mark a class).
        self.varies = sd > 1e-8
        self.sd = np.where(self.varies, sd, 1.0)

    def times(self, weights: np.ndarray) -> np.ndarray:
        """``Z @ weights`` (cells x columns) without forming ``Z``."""
        scaled = weights / self.sd[:, None]
        offset = self.mean @ scaled
        out = np.empty((self.n_cells, weights.shape[1]))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            out[start:stop] = np.asarray(block @ scaled) - offset
        return out

    def columns(self, genes: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense standardised expression of some genes (cells x genes), optionally of some cells."""
        part = self.matrix[:, genes] if rows is None else self.matrix[rows][:, genes]
        part = part.toarray() if sp.issparse(part) else np.asarray(part)
        return (part.astype(np.float64) - self.mean[genes]) / self.sd[genes]

    def gene_correlations(self, scores: np.ndarray) -> np.ndarray:
        """Pearson correlation of every gene with each column of ``scores`` (genes x columns)."""
        centred = scores - scores.mean(axis=0)
        sums = np.zeros((self.mean.size, scores.shape[1]))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            part = block.T @ centred[start:stop]
            sums += part.toarray() if sp.issparse(part) else np.asarray(part)
        # sum_c (x - mean) * s_c = sum_c x * s_c (s is centred); divide by n sd_x sd_s
        sd_scores = centred.std(axis=0)
        out = sums / (self.n_cells * self.sd[:, None] * np.where(sd_scores > 1e-12, sd_scores, 1.0))
        out[~self.varies] = 0.0
        return out

    def group_means(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Mean standardised expression per group (``n_groups x genes``); ``-1`` = no group."""
        sums = np.zeros((n_groups, self.mean.size))
        counts = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.float64)
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            g = groups[start:stop]
            keep = np.flatnonzero(g >= 0)
            if keep.size == 0:
                continue
            indicator = sp.csr_matrix((np.ones(keep.size), (g[keep], keep)), shape=(n_groups, stop - start))
            part = indicator @ block
            sums += part.toarray() if sp.issparse(part) else np.asarray(part)
        means = sums / np.maximum(counts, 1)[:, None]
        return (means - self.mean) / self.sd


def _standardise_genes(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Standardise each column over the ``rows`` genes; other genes get 0."""
    out = np.zeros_like(values, dtype=np.float64)
    if rows.any():
        part = values[rows]
        sd = part.std(axis=0)
        out[rows] = (part - part.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)
    return out


def _program_differences(standardised: _Standardised, scores: np.ndarray) -> np.ndarray:
    """Per program (column of ``scores``): standardised (over genes) difference between the mean
    standardised expression of the cells it wins and that of the other cells (genes x programs)."""
    n_programs = scores.shape[1]
    best = np.argmax(scores, axis=1)
    means = standardised.group_means(best, n_programs)
    counts = np.bincount(best, minlength=n_programs).astype(np.float64)
    total = counts @ means
    out = np.zeros((means.shape[1], n_programs))
    for k in range(n_programs):
        if 0 < counts[k] < len(scores):
            out[:, k] = means[k] - (total - counts[k] * means[k]) / (len(scores) - counts[k])
    sd = out.std(axis=0)
    return (out - out.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def match_programs(agreement: np.ndarray) -> np.ndarray:
    """One-to-one assignment of programs (rows) to classes (columns) maximising the summed agreement.

    Returns ``order`` such that class ``k`` takes program ``order[k]`` (so ``scores[:, order]``
    puts each class's program in its column).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_zeroshot import match_programs
    >>> agreement = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # program 0 fits class 1...
    >>> match_programs(agreement).tolist()
    [2, 0, 1]
    """
    from scipy.optimize import linear_sum_assignment

    programs, classes = linear_sum_assignment(np.asarray(agreement, dtype=np.float64), maximize=True)
    order = np.empty(agreement.shape[1], dtype=np.int64)
    order[classes] = programs
    return order


def _refine(
    standardised: _Standardised, text_weights: np.ndarray, n_genes: int, rounds: int, allowed: np.ndarray
):
    return anchored_refine(standardised, text_weights, n_genes, rounds, allowed=allowed)


def elmo_scores(
    adata: AnnData,
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    *,
    gene_embeddings: GeneEmbeddings | None = None,
    encoder: Any = None,
    score: Score = "genes",
    use_rep: str = "X_elmo",
    layer: str | None = None,
    use_raw: bool | None = None,
    contrast: bool = True,
    n_genes: int = 20,
    refine: int = 3,
    gene_mentions: bool = True,
    mention_weight: float = 4.0,
    rematch: bool = False,
    centre: bool = True,
    scale: bool = True,
    abstain: bool = False,
    abstain_level: float = ABSTAIN_LEVEL,
    unspell: bool = True,
    cache: Any = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Class scores ``(n_cells, n_classes)`` of zero-shot elmo (see the module description).

    Returns
    -------
    scores
        Higher is better; z-scores over cells when ``scale``, cosines otherwise.
    info
        ``provenance`` (encoder, gene table), ``genes`` (signature genes per class, for
        ``score="genes"``; genes named negative are listed with a leading ``-``),
        ``mentions`` (with ``gene_mentions``), ``rematched`` (with ``rematch``: class -> the
        class whose refined signature it took) and the matrix used.

    Examples
    --------
    >>> import numpy as np
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> from scelmo.annotation._elmo_zeroshot import elmo_scores
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.pp.build_gene_embeddings(adata.raw.var_names, progress=False)  # doctest: +SKIP
    >>> scores, info = elmo_scores(adata, ["B", "T"], {"B": ["CD79A+ B cell"], "T": ["CD3E+ T cell"]},
    ...                            gene_embeddings=table)  # doctest: +SKIP
    >>> info["mentions"]  # doctest: +SKIP
    {'B': ['CD79A+ -> CD79A'], 'T': ['CD3E+ -> CD3E']}
    """
    if score not in ("genes", "cell"):
        raise ValueError(f"`score` must be 'genes' or 'cell', got {score!r}.")
    if n_genes < 1:
        raise ValueError(f"`n_genes` must be at least 1, got {n_genes}.")
    if refine < 0:
        raise ValueError(f"`refine` must be >= 0, got {refine}.")
    if not mention_weight >= 0:
        raise ValueError(f"`mention_weight` must be >= 0, got {mention_weight}.")
    if not 0 < abstain_level < 1:
        raise ValueError(f"`abstain_level` must be in (0, 1), got {abstain_level}.")
    embed_info = adata.uns.get(use_rep, {}) if isinstance(adata.uns.get(use_rep), Mapping) else {}
    recorded_table = dict(embed_info.get("gene_table", {}))
    if gene_embeddings is not None:
        if not isinstance(gene_embeddings, GeneEmbeddings):
            raise TypeError(
                f"`gene_embeddings` must be a scelmo.GeneEmbeddings, got {type(gene_embeddings).__name__}."
            )
        recorded_hash = recorded_table.get("content_hash")
        if score == "cell" and recorded_hash and recorded_hash != gene_embeddings.content_hash:
            raise ValueError(
                f"obsm[{use_rep!r}] was embedded with a different gene table (content hash "
                f"{recorded_hash[:12]}...) than the one passed ({gene_embeddings.content_hash[:12]}...). "
                "Pass the table used by elmo_embed, or re-run scelmo.tl.elmo_embed with this one."
            )
        provenance = {**gene_embeddings.provenance, "content_hash": gene_embeddings.content_hash}
    elif score == "genes":
        raise ValueError(
            "score='genes' needs the gene table: pass gene_embeddings= (the table given to elmo_embed), "
            "or use score='cell' to compare the cell embeddings in obsm directly."
        )
    else:
        if not recorded_table:
            raise ValueError(
                f"adata.uns[{use_rep!r}]['gene_table'] is missing, so the encoder of the gene table is "
                "unknown. Run scelmo.tl.elmo_embed first, or pass gene_embeddings=."
            )
        provenance = recorded_table
    text_encoder = resolve_encoder(provenance, encoder)
    vectors = class_vectors(text_encoder, texts, classes, cache=cache, cache_dir=cache_dir)
    table_dim = provenance.get("dim") or (gene_embeddings.dim if gene_embeddings is not None else None)
    if table_dim is not None and int(table_dim) != vectors.shape[1]:
        raise ValueError(
            f"The encoder gives {vectors.shape[1]}-d vectors but the gene table is {table_dim}-d: they "
            "cannot come from the same encoder."
        )
    info: dict[str, Any] = {
        "provenance": {
            "gene_table": {k: v for k, v in provenance.items() if k != "genes_without_text"},
            "encoder": text_encoder.params(),
        }
    }
    if score == "cell":
        if use_rep not in adata.obsm:
            raise KeyError(
                f"adata.obsm[{use_rep!r}] not found: run scelmo.tl.elmo_embed(adata, table, key_added={use_rep!r}) "
                "first, or use score='genes' with gene_embeddings=."
            )
        cells = np.asarray(adata.obsm[use_rep], dtype=np.float64)
        if cells.shape[1] != vectors.shape[1]:
            raise ValueError(
                f"obsm[{use_rep!r}] is {cells.shape[1]}-d but the class vectors are {vectors.shape[1]}-d."
            )
        if centre:
            cells = cells - cells.mean(axis=0)
        cells /= np.maximum(np.linalg.norm(cells, axis=1, keepdims=True), 1e-12)
        scores = cells @ vectors.T
        info["matrix"] = f"obsm[{use_rep!r}]"
        return (standardise_columns(scores) if scale else scores), info

    assert gene_embeddings is not None
    recorded_matrix = str(embed_info.get("params", {}).get("matrix", ""))
    if layer is None and use_raw is None and recorded_matrix:
        # the matrix elmo_embed used: "raw", "X" or "layers['name']"
        found = re.fullmatch(r"layers\[['\"](.+)['\"]\]", recorded_matrix)
        if found and found.group(1) in adata.layers:
            layer = found.group(1)
        elif recorded_matrix in ("raw", "X"):
            use_raw = recorded_matrix == "raw"
    matrix, var_names, source = expression_matrix(adata, layer=layer, use_raw=use_raw)
    aligned = gene_embeddings.align(var_names, min_coverage=0.0)
    table = aligned.matrix.astype(np.float64)
    table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    similarity = table @ vectors.T
    contrasted = contrast and len(classes) > 1
    if contrasted:
        similarity = similarity - similarity.mean(axis=1, keepdims=True)
    text_affinity = _standardise_genes(similarity, aligned.matched)
    allowed = aligned.matched
    directions = None
    if gene_mentions:
        from ._gene_mentions import class_mentions

        directions, info["mentions"] = class_mentions(classes, texts, list(var_names))
    named_positive = (directions > 0).any(axis=1) if directions is not None else np.zeros_like(allowed)
    if unspell:
        candidates = np.union1d(
            _unspelled_candidates(text_affinity, allowed, n_genes), np.flatnonzero(named_positive & allowed)
        )
        table[candidates] = _project_out_symbols(
            table[candidates],
            [str(v) for v in np.asarray(var_names)[candidates]],
            text_encoder,
            cache,
            cache_dir,
        )
        similarity = table[candidates] @ vectors.T
        if contrasted:
            similarity = similarity - similarity.mean(axis=1, keepdims=True)
        part = similarity - similarity.mean(axis=0)
        allowed = np.zeros_like(allowed)
        allowed[candidates] = True
        text_affinity = np.zeros_like(text_affinity)
        text_affinity[candidates] = part / np.where(part.std(axis=0) > 1e-12, part.std(axis=0), 1.0)
        text_affinity[~allowed] = text_affinity[allowed].min()
    affinity = text_affinity
    if directions is not None:
        named = directions - directions.mean(axis=1, keepdims=True) if contrasted else directions
        affinity = text_affinity + mention_weight * named
        allowed = allowed | named_positive
    standardised = _Standardised(matrix)
    # A gene constant over the cells cannot mark a class (and scores 0 in every cell).
    allowed = allowed & standardised.varies
    weights = top_genes(affinity, n_genes, allowed=allowed)
    if directions is not None:
        weights[(directions < 0) & standardised.varies[:, None]] = -1.0 / n_genes
    text_weights = weights
    scores = standardised.times(weights)
    if refine:
        scores, weights, refined = _refine(standardised, text_weights, n_genes, refine, allowed)
        info["kept_text"] = [c for c, kept in zip(classes, refined["kept_text"], strict=True) if kept]
        if rematch and len(classes) > 1:
            agreement = weights.T @ text_affinity
            if directions is not None and mention_weight > 0:
                named_count = np.maximum(np.abs(directions).sum(axis=0), 1.0)
                differences = _program_differences(standardised, standardise_columns(scores))
                agreement = agreement + mention_weight * (differences.T @ directions) / named_count
            order = match_programs(agreement)
            scores, weights = scores[:, order], weights[:, order]
            info["rematched"] = {c: classes[int(p)] for c, p in zip(classes, order, strict=True)}
    if abstain:
        # the presence test reads the text's genes (what the class was asked to be); the cell
        # test the final signature (what the class's cells are scored on)
        present, observed, cut = signature_null(standardised, text_weights).present(abstain_level)
        present &= (text_weights > 0).any(axis=0)
        final_null = signature_null(standardised, weights, seed=1)
        positive_scores = standardised.times(np.clip(weights, 0.0, None))
        ranked = np.where(present[None, :], standardise_columns(scores), -np.inf)
        best = np.argmax(ranked, axis=1)
        rows = np.arange(len(scores))
        cell_ok = positive_scores[rows, best] > final_null.cell_cut(CELL_LEVEL)[rows, best]
        info["absent"] = [c for c, p in zip(classes, present, strict=True) if not p]
        info["unknown_cells"] = ~cell_ok if present.any() else np.ones(len(scores), dtype=bool)
        info["present_classes"] = present
        info["presence"] = {
            c: {"variance": float(o), "null_quantile": float(q)}
            for c, o, q in zip(classes, observed, cut, strict=True)
        }
    names = np.asarray(var_names)
    info["matrix"] = source
    info["genes"] = {c: _ranked(names, text_weights[:, k], affinity[:, k]) for k, c in enumerate(classes)}
    if refine:
        info["refined_genes"] = {
            c: _ranked(names, np.where(weights[:, k] > 0, weights[:, k], 0.0), weights[:, k])
            for k, c in enumerate(classes)
        }
    info["coverage"] = aligned.report(max_listed=20)
    logger.debug(
        "zero-shot elmo: %d classes, %d matched genes, %d refinement rounds",
        len(classes),
        aligned.n_matched,
        refine,
    )
    return (standardise_columns(scores) if scale else scores), info


#: With ``unspell``, the genes whose symbols are embedded: this many times ``n_genes`` per class.
UNSPELL_CANDIDATES = 10
#: A gene vector whose residual after projecting out its symbol is shorter than this is dropped.
SYMBOL_ONLY = 0.05


def _unspelled_candidates(affinity: np.ndarray, allowed: np.ndarray, n_genes: int) -> np.ndarray:
    """The genes closest to any class by text (``UNSPELL_CANDIDATES * n_genes`` per class)."""
    take = top_genes(affinity, UNSPELL_CANDIDATES * n_genes, allowed=allowed)
    return np.flatnonzero((take > 0).any(axis=1))


def _project_out_symbols(
    rows: np.ndarray, symbols: list[str], encoder: Any, cache: Any, cache_dir: Any
) -> np.ndarray:
    """Gene vectors without their component along the embedding of the bare symbol.

    A gene text begins with its symbol and aliases, which a general-domain encoder embeds by
    their letters ("B cell" is close to BAX, BLVRB, B9D1; "dendritic cell" to DENND2D): the part
    of a gene's vector that its symbol alone explains says how it is spelled, not what it does.
    """
    from ..text import CachedEncoder, resolve_cache

    store = resolve_cache(cache, cache_dir)
    if store is not None:
        encoder = CachedEncoder(encoder, cache=store)
    spelled = np.asarray(encoder.encode(symbols), dtype=np.float64)
    spelled /= np.maximum(np.linalg.norm(spelled, axis=1, keepdims=True), 1e-12)
    out = rows - (rows * spelled).sum(axis=1, keepdims=True) * spelled
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    # a text that is (almost) only its symbol says nothing else: no vector rather than noise
    return np.where(norms > SYMBOL_ONLY, out / np.maximum(norms, 1e-12), 0.0)


def _ranked(names: np.ndarray, weights: np.ndarray, order_by: np.ndarray) -> list[str]:
    """Signature genes, best first; genes with a negative weight follow, as ``-NAME``."""
    chosen = np.flatnonzero(weights > 0)
    against = np.flatnonzero(weights < 0)
    return [
        *names[chosen[np.argsort(-order_by[chosen], kind="stable")]].tolist(),
        *(f"-{name}" for name in names[against]),
    ]


def default_temperature(scale: bool) -> float:
    """1 for standardised scores, LangCell's 0.05 for raw cosines."""
    return 1.0 if scale else 0.05
