"""Placeholder: replaced by the text work."""


def build_gene_embeddings(genes, source="offline", encoder="local"):  # pragma: no cover - placeholder
    raise NotImplementedError
