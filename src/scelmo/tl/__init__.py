"""Tools: cell embeddings and what is computed from them."""

from scelmo.evaluation import annotation_metrics

from ._benchmark import benchmark
from ._cell_sentence_embed import cell_sentence_embed
from ._elmo_embed import elmo_embed
from ._explain_annotation import explain_annotation
from ._in_silico_knockout import in_silico_knockout
from ._knn_annotate import knn_annotate
from ._langcell_encode import langcell_encode
from ._score_text import score_text
from ._zeroshot_annotate import zeroshot_annotate

__all__ = [
    "annotation_metrics",
    "benchmark",
    "cell_sentence_embed",
    "elmo_embed",
    "explain_annotation",
    "in_silico_knockout",
    "knn_annotate",
    "langcell_encode",
    "score_text",
    "zeroshot_annotate",
]
