"""Placeholder."""


class GeneEmbeddings:  # pragma: no cover
    pass


class AlignedGeneEmbeddings:  # pragma: no cover
    pass
