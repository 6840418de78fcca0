"""Cell Ontology lookups: label normalisation, matching free-text labels, common ancestors."""

from __future__ import annotations

import pytest

from scelmo.annotation import CellOntology, normalize_label


@pytest.fixture(scope="module")
def cl() -> CellOntology:
    return CellOntology()


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("CD14+ Monocyte", "cd14 positive monocyte"),
        ("CD4+/CD45RA+/CD25- Naive T", "cd4 positive cd45ra cd25 negative naive t cell"),
        ("Dendritic", "dendritic cell"),
        ("NK cells", "natural killer cell"),
        ("T cell", "t cell"),
        ("naïve B", "naive b cell"),
    ],
)
def test_normalize_label(label, expected):
    assert normalize_label(label) == expected


@pytest.mark.parametrize(
    ("label", "term_id", "how"),
    [
        # the 10 bulk labels of pbmc68k_reduced, as far as the ontology allows
        ("CD14+ Monocyte", "CL:0001054", "label"),
        ("CD19+ B", "CL:0001201", "synonym"),
        ("CD4+/CD25 T Reg", "CL:0000792", "fuzzy"),
        ("CD4+/CD45RO+ Memory", "CL:0001204", "fuzzy"),
        ("CD4+/CD45RA+/CD25- Naive T", "CL:0000895", "fuzzy"),
        ("CD56+ NK", "CL:0000623", "fuzzy"),
        ("Dendritic", "CL:0000451", "label"),
        ("NK cell", "CL:0000623", "label"),
        ("B lymphocyte", "CL:0000236", "synonym"),
        ("CL:0000576", "CL:0000576", "id"),
    ],
)
def test_match(cl, label, term_id, how):
    match = cl.match(label)
    assert (match.term_id, match.how) == (term_id, how)
    assert match.term_label == cl.label(term_id)
    assert 0 < match.score <= 1


def test_unmappable_labels_are_reported_not_guessed(cl):
    for label in ("CD34+", "foo bar", "CL:9999999"):
        match = cl.match(label)
        assert match.term_id is None
        assert match.how == "unmapped"


def test_overrides_and_bad_ids(cl):
    matches = cl.match_many(["CD34+", "B cell"], overrides={"CD34+": "CL:0000837"})
    assert [m.term_id for m in matches] == ["CL:0000837", "CL:0000236"]
    assert matches[0].how == "user"
    with pytest.raises(KeyError, match="not a Cell Ontology term id"):
        cl.match_many(["x"], overrides={"x": "CL:123"})


def test_terms_and_common_ancestor(cl):
    assert cl.label("CL:0000236") == "B cell"
    assert cl.definition("CL:0000236").startswith("A lymphocyte of B lineage")
    assert "B lymphocyte" in cl.synonyms("CL:0000236")
    ancestors = cl.ancestors("CL:0000236")
    assert ancestors["CL:0000542"] == 2  # lymphocyte, two steps up
    # a term is its own nearest common ancestor with any of its descendants
    assert cl.common_ancestor(["CL:0000236", "CL:0000236"]) == "CL:0000236"
    assert cl.common_ancestor(["CL:0000542", "CL:0000236"]) == "CL:0000542"
    # B cell and NK cell meet at lymphocyte; two T cell subsets meet below "T cell"
    assert cl.label(cl.common_ancestor(["CL:0000236", "CL:0000623"])) == "lymphocyte"
    shared = cl.common_ancestor(["CL:0000624", "CL:0000625"])
    assert "CL:0000084" in {shared, *cl.ancestors(shared)}
    with pytest.raises(ValueError, match="at least one"):
        cl.common_ancestor([])
