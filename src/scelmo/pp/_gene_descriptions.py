"""Placeholder: replaced by the text work."""


def gene_descriptions(genes, source="offline"):  # pragma: no cover - placeholder
    raise NotImplementedError
