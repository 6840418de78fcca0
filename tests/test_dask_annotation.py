"""Annotation on dask inputs: the scoring step runs block by block, and equals the in-memory results.

``tl.knn_annotate`` (query embeddings as a dask array), ``tl.zeroshot_annotate`` with
``method="elmo"`` (``score="genes"`` on a dask expression matrix, ``score="cell"`` on lazy
``elmo_embed`` embeddings) and ``method="langcell"`` (a dask token matrix): identical labels and
probabilities within 1e-6 (LangCell: its batch-independence tolerance, 1e-5), the cells x
genes matrix never computed whole in one task, the big shared object one key of the graph, and
one run through a ``distributed.LocalCluster``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
from _pbmc_annotation import MARKERS, BagOfWords, symbol_table
from _synthetic import random_token_matrix
from anndata import AnnData

import scelmo as se

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

#: Row chunks of the lazy copies (pbmc68k_reduced has 700 cells: 5 chunks, the last one short).
CHUNK = 150


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def table(pbmc):
    """A gene table whose 'text' is the gene symbol, embedded by the stand-in encoder."""
    return symbol_table(pbmc.raw.var_names)


def _expression(pbmc, lazy: bool, gene_chunk: int = 400, graph: bool = True) -> AnnData:
    """The log-normalised raw matrix in ``X`` (CSR), or as a dask array of CSR blocks.

    With ``graph``, ``obsp['connectivities']`` is pbmc's neighbour graph (what zero-shot
    smoothing reads; a dask matrix without one is not smoothed).
    """
    matrix = sp.csr_matrix(pbmc.raw.X).astype(np.float32)
    adata = AnnData(da.from_array(matrix, chunks=(CHUNK, gene_chunk)) if lazy else matrix)
    adata.var_names = list(pbmc.raw.var_names)
    adata.obs_names = pbmc.obs_names
    if graph:
        adata.obsp["connectivities"] = pbmc.obsp["connectivities"]
    return adata


class _Largest(dask.callbacks.Callback):
    """The largest ``rows x columns`` any task of a computation produced (the matrix, if gathered)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def _posttask(self, key, result, dsk, state, worker_id):
        for value in result if isinstance(result, tuple) else (result,):
            if getattr(value, "ndim", 0) == 2:
                self.shapes.append(value.shape)


def _same(eager: AnnData, lazy: AnnData, key: str, atol: float = 1e-6) -> None:
    assert isinstance(lazy.obsm[f"{key}_probs"], np.ndarray)  # computed: obs and abstention need them
    np.testing.assert_allclose(lazy.obsm[f"{key}_probs"], eager.obsm[f"{key}_probs"], rtol=0, atol=atol)
    assert lazy.obs[key].astype(str).tolist() == eager.obs[key].astype(str).tolist()
    np.testing.assert_allclose(lazy.obs[f"{key}_score"], eager.obs[f"{key}_score"], rtol=0, atol=atol)


ELMO_OPTIONS = [
    {"refine": 0, "abstain": False, "smooth": 0},
    {"refine": 3, "abstain": False},
    {"refine": 2, "rematch": True, "abstain": False},
    {"refine": 2, "abstain": True},
    {"refine": 2, "abstain": True, "smooth": 0},
]


def _elmo_common(table) -> dict:
    """The elmo options every dask agreement test passes (the stand-in table and encoder)."""
    return {"gene_embeddings": table, "encoder": BagOfWords(), "n_genes": 5, "unspell": False, "cache": False}


@pytest.mark.parametrize("options", ELMO_OPTIONS)
def test_elmo_gene_scores_on_dask_equal_in_memory(pbmc, table, options):
    eager, lazy = _expression(pbmc, False), _expression(pbmc, True)
    common = _elmo_common(table)
    se.tl.zeroshot_annotate(eager, MARKERS, **common, **options)
    largest = _Largest()
    with largest:
        se.tl.zeroshot_annotate(lazy, MARKERS, **common, **options)
    _same(eager, lazy, "zeroshot")
    for name in ("genes", "refined_genes", "kept_text", "rematched", "absent"):
        assert lazy.uns["zeroshot"].get(name) == eager.uns["zeroshot"].get(name)
    for cls, presence in eager.uns["zeroshot"].get("presence", {}).items():
        assert lazy.uns["zeroshot"]["presence"][cls] == presence
    assert isinstance(lazy.X, da.Array)
    # no task held the cells x genes matrix: the tasks that read all genes read one row chunk, and
    # no result is large both ways (gene sums are genes x classes, scores cells x classes)
    wide = [shape for shape in largest.shapes if shape[1] == lazy.n_vars]
    assert wide
    assert max(rows for rows, _ in wide) <= CHUNK
    assert all(min(shape) <= CHUNK for shape in largest.shapes)


def test_a_dask_matrix_without_a_graph_is_not_smoothed(pbmc, table):
    eager, lazy = _expression(pbmc, False, graph=False), _expression(pbmc, True, graph=False)
    common = _elmo_common(table)
    with pytest.warns(UserWarning, match="not smoothed"):
        se.tl.zeroshot_annotate(lazy, MARKERS, **common)
    assert "smoothed_on" not in lazy.uns["zeroshot"]
    se.tl.zeroshot_annotate(eager, MARKERS, **common, smooth=0)
    _same(eager, lazy, "zeroshot")


def test_elmo_cell_scores_on_lazy_embeddings_equal_in_memory(pbmc, table):
    eager, lazy = _expression(pbmc, False), _expression(pbmc, True)
    se.tl.elmo_embed(eager, table, progress=False)
    se.tl.elmo_embed(lazy, table, progress=False)
    assert isinstance(lazy.obsm["X_elmo"], da.Array)
    for centre in (True, False):
        options = {"encoder": BagOfWords(), "score": "cell", "centre": centre, "cache": False}
        se.tl.zeroshot_annotate(eager, MARKERS, **options)
        se.tl.zeroshot_annotate(lazy, MARKERS, **options)
        _same(eager, lazy, "zeroshot")
    assert isinstance(lazy.obsm["X_elmo"], da.Array)  # left lazy
    # the formula, on one cell, independently: cosine of the centred embedding to each class vector
    cells = eager.obsm["X_elmo"].astype(np.float64)
    vectors = BagOfWords().encode(list(MARKERS.values())).astype(np.float64)
    cell = cells[11] - cells.mean(0)
    cosines = vectors @ cell / np.linalg.norm(cell)
    se.tl.zeroshot_annotate(lazy, MARKERS, encoder=BagOfWords(), score="cell", scale=False, cache=False)
    probs = np.exp(cosines / 0.05) / np.exp(cosines / 0.05).sum()
    np.testing.assert_allclose(lazy.obsm["zeroshot_probs"][11], probs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("weights", "search"), [("uniform", "hnsw"), ("distance", "hnsw"), ("uniform", "exact")]
)
def test_knn_votes_on_dask_queries_equal_in_memory(pbmc, weights, search):
    from scelmo._neighbors import knn_votes

    reference, query = pbmc[:400], pbmc[400:]
    labels = reference.obs["bulk_labels"].astype(str).to_numpy()
    x = query.obsm["X_pca"].copy()
    x[3] = np.nan  # a cell that cannot vote
    # one thread: hnswlib's parallel insertion builds a different graph from run to run
    options = {"weights": weights, "search": search, "n_threads": 1}
    eager = knn_votes(reference.obsm["X_pca"], labels, x, **options)
    lazy = knn_votes(reference.obsm["X_pca"], labels, da.from_array(x, chunks=(70, 10)), **options)
    np.testing.assert_array_equal(lazy.neighbors, eager.neighbors)
    np.testing.assert_array_equal(lazy.valid, eager.valid)
    np.testing.assert_allclose(lazy.probs, eager.probs, rtol=0, atol=1e-6)
    assert not lazy.valid[3]
    assert np.isnan(lazy.probs[3]).all()


def test_knn_annotate_on_lazy_embeddings_equals_in_memory(pbmc, table):
    reference = _expression(pbmc[:300], False)
    reference.obs["cell_type"] = pbmc.obs["bulk_labels"].to_numpy()[:300]
    eager, lazy = _expression(pbmc[300:], False), _expression(pbmc[300:], True)
    for adata in (reference, eager, lazy):
        se.tl.elmo_embed(adata, table, progress=False)
    assert isinstance(lazy.obsm["X_elmo"], da.Array)
    se.tl.knn_annotate(eager, reference, "cell_type", threshold=0.5, n_threads=1)
    se.tl.knn_annotate(lazy, reference, "cell_type", threshold=0.5, n_threads=1)
    _same(eager, lazy, "knn")
    assert (lazy.obs["knn"] == "unknown").any()  # abstention reads the computed vote shares
    assert lazy.uns["knn"]["params"] == eager.uns["knn"]["params"]
    assert isinstance(lazy.obsm["X_elmo"], da.Array)
    # use_rep="X" on a dask matrix of sparse blocks
    se.tl.knn_annotate(eager, reference, "cell_type", use_rep="X", key_added="raw", n_threads=1)
    se.tl.knn_annotate(lazy, reference, "cell_type", use_rep="X", key_added="raw", n_threads=1)
    _same(eager, lazy, "raw")


def test_the_index_is_one_key_of_the_graph(pbmc):
    from scelmo._neighbors import HnswIndex, block_votes, knn_votes

    reference = pbmc[:400]
    query = da.from_array(pbmc[400:].obsm["X_pca"], chunks=(50, 50))
    built = []

    class Counting(HnswIndex):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    import scelmo._neighbors as neighbors

    labels = reference.obs["bulk_labels"].astype(str).to_numpy()
    original = neighbors.HnswIndex
    neighbors.HnswIndex = Counting
    try:
        votes = knn_votes(reference.obsm["X_pca"], labels, query)
    finally:
        neighbors.HnswIndex = original
    assert len(built) == 1
    assert votes.probs.shape[0] == 300
    # the graph the votes run: six tasks, all on the same index key
    from scelmo._dask_blocks import map_row_chunks, shared

    index = HnswIndex(reference.obsm["X_pca"])
    codes = np.unique(labels, return_inverse=True)[1]
    tasks = map_row_chunks(
        block_votes, query, shared(index, pure=False), shared(codes), compute=False, k=10, n_classes=10
    )
    graph = dict(dask.delayed(tasks).__dask_graph__())
    holding = [key for key, value in graph.items() if isinstance(getattr(value, "value", value), HnswIndex)]
    assert len(tasks) == 6
    assert len(holding) == 1


def test_elmo_weights_enter_each_pass_once(pbmc):
    from scelmo._dask_blocks import map_row_chunks, shared
    from scelmo.annotation._standardised import _times_block

    lazy = _expression(pbmc, True)
    weights = np.ones((lazy.n_vars, 3))
    tasks = map_row_chunks(_times_block, lazy.X, shared(weights), np.zeros(3), compute=False)
    graph = dict(dask.delayed(tasks).__dask_graph__())
    holding = [
        key
        for key, value in graph.items()
        if getattr(getattr(value, "value", value), "shape", None) == weights.shape
    ]
    assert len(tasks) == 5
    assert len(holding) == 1


def _tiny_langcell(tmp_path):
    torch = pytest.importorskip("torch")
    from _langcell_fixtures import write_checkpoint

    from scelmo.models import LangCell

    torch.set_num_threads(1)
    return LangCell.from_pretrained(write_checkpoint(tmp_path / "ckpt", seed=3, with_vocab=True).path)


LANGCELL_TEXTS = {
    "T cell": "cell type: t lymphocyte. a cell of the immune system that express cd4 or cd8",
    "B cell": "cell type: b lymphocyte.",
    "monocyte": "cell type: monocyte. a blood cell of the immune system, cd14 +",
}


@pytest.mark.parametrize("options", [{"alpha": 0.3}, {"use_ctm": False}])
def test_langcell_zeroshot_on_dask_tokens_equals_in_memory(tmp_path, options):
    model = _tiny_langcell(tmp_path)
    tokens = random_token_matrix(60)
    eager = AnnData(np.zeros((60, 1), dtype=np.float32))
    eager.obsm["langcell_tokens"] = tokens
    lazy = AnnData(np.zeros((60, 1), dtype=np.float32))
    lazy.obsm["langcell_tokens"] = da.from_array(tokens, chunks=(25, 2048))
    common = {"method": "langcell", "model": model, "batch_size": 8, "progress": False, **options}
    se.tl.zeroshot_annotate(eager, LANGCELL_TEXTS, **common)
    se.tl.zeroshot_annotate(lazy, LANGCELL_TEXTS, **common)
    _same(eager, lazy, "zeroshot", atol=1e-5)
    assert isinstance(lazy.obsm["langcell_tokens"], da.Array)
    assert lazy.uns["zeroshot"]["checkpoint_hash"] == eager.uns["zeroshot"]["checkpoint_hash"]
    assert lazy.uns["zeroshot"]["params"] == eager.uns["zeroshot"]["params"]


def test_langcell_model_is_one_key_of_the_graph(tmp_path):
    from scelmo._dask_blocks import map_row_chunks, shared
    from scelmo.annotation._langcell_zeroshot import token_block_probs

    model = _tiny_langcell(tmp_path)
    tokens = da.from_array(random_token_matrix(60), chunks=(20, 2048))
    tasks = map_row_chunks(
        token_block_probs, tokens, shared(model, pure=False), ["a", "b"], {}, compute=False
    )
    graph = dict(dask.delayed(tasks).__dask_graph__())
    holding = [
        key for key, value in graph.items() if type(getattr(value, "value", value)).__name__ == "LangCell"
    ]
    assert len(tasks) == 3
    assert len(holding) == 1


def test_annotation_through_a_local_cluster(pbmc, table, tmp_path):
    distributed = pytest.importorskip("distributed")
    model = _tiny_langcell(tmp_path)
    tokens = random_token_matrix(40, seed=1)
    elmo = _elmo_common(table)
    eager = _expression(pbmc, False)
    se.tl.zeroshot_annotate(eager, MARKERS, refine=2, **elmo)
    reference = pbmc[:300]
    query = pbmc[300:].copy()
    se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca", n_threads=1)
    cells = AnnData(np.zeros((40, 1), dtype=np.float32))
    cells.obsm["langcell_tokens"] = tokens
    langcell = {"method": "langcell", "model": model, "batch_size": 8, "progress": False}
    se.tl.zeroshot_annotate(cells, LANGCELL_TEXTS, **langcell)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy = _expression(pbmc, True)
        se.tl.zeroshot_annotate(lazy, MARKERS, refine=2, **elmo)
        lazy_query = query.copy()
        lazy_query.obsm["X_pca"] = da.from_array(query.obsm["X_pca"], chunks=(100, 50))
        se.tl.knn_annotate(lazy_query, reference, "bulk_labels", use_rep="X_pca", n_threads=1)
        lazy_cells = AnnData(np.zeros((40, 1), dtype=np.float32))
        lazy_cells.obsm["langcell_tokens"] = da.from_array(tokens, chunks=(15, 2048))
        se.tl.zeroshot_annotate(lazy_cells, LANGCELL_TEXTS, **langcell)
    _same(eager, lazy, "zeroshot")
    _same(query, lazy_query, "knn")
    _same(cells, lazy_cells, "zeroshot", atol=1e-5)


def test_a_non_finite_value_in_a_dask_matrix_is_refused(pbmc, table):
    matrix = sp.csr_matrix(pbmc.raw.X).astype(np.float32).toarray()
    matrix[650, 7] = np.nan
    lazy = AnnData(da.from_array(matrix, chunks=(CHUNK, 765)))
    lazy.var_names = list(pbmc.raw.var_names)
    with pytest.raises(ValueError, match="NaN or infinite values; fix or drop them first"):
        se.tl.zeroshot_annotate(
            lazy, MARKERS, gene_embeddings=table, encoder=BagOfWords(), smooth=0, cache=False
        )


def test_cross_validated_knn_on_dask_embeddings_equals_in_memory(pbmc):
    eager = pbmc.copy()
    lazy = pbmc.copy()
    lazy.obsm["X_pca"] = da.from_array(pbmc.obsm["X_pca"], chunks=(CHUNK, 50))
    se.tl.knn_annotate(eager, None, "bulk_labels", use_rep="X_pca", n_threads=1)
    se.tl.knn_annotate(lazy, None, "bulk_labels", use_rep="X_pca", n_threads=1)  # the reference: computed
    _same(eager, lazy, "knn")
