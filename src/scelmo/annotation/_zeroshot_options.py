"""The options of each zero-shot method, defined once: library defaults, validation, flags, ``uns`` record.

:func:`scelmo.tl.zeroshot_annotate` builds one of these from its keyword arguments, the
runner (:func:`scelmo.annotation._zeroshot.run_zeroshot`) hands it to the method's scorer, and
``scelmo annotate`` makes one command-line flag per field from the field's ``metadata``:

``flag``
    The flag (``"--n-genes"``). A field without it has no flag of its own (a flag shared with
    other commands sets it, or it cannot be given on a command line; the comment says which).
``help``
    The flag's help; ``"; default: ..."`` is added from the field's default.
``metavar``, ``choices``, ``type``
    Passed to :meth:`argparse.ArgumentParser.add_argument` (``type`` defaults to the type of
    the field's default).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._langcell_zeroshot import ALPHA, MAX_PAIRS

if TYPE_CHECKING:
    import torch

__all__ = ["ElmoZeroShotOptions", "LangCellZeroShotOptions", "option_fields"]

#: Default significance level of the label-free abstention (see ``_elmo_null``).
ABSTAIN_LEVEL = 0.05


def _flag(flag: str, help: str, **argparse: Any) -> dict[str, Any]:
    """The ``metadata`` of a field with a command-line flag of its own (see the module description)."""
    return {"flag": flag, "help": help, **argparse}


@dataclass(frozen=True)
class ElmoZeroShotOptions:
    """Options of zero-shot elmo (``method="elmo"``); see :func:`scelmo.tl.zeroshot_annotate` for each.

    Examples
    --------
    >>> from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions
    >>> ElmoZeroShotOptions(n_genes=10).n_genes
    10
    >>> ElmoZeroShotOptions(score="cells")
    Traceback (most recent call last):
    ...
    ValueError: `score` must be 'genes' or 'cell', got 'cells'.
    """

    score: Literal["genes", "cell"] = field(
        default="genes",
        metadata=_flag(
            "--score",
            "genes: expression of the genes closest to each class text (needs the gene table); cell: "
            "cosine of obsm[--use-rep] to the class texts",
            choices=("genes", "cell"),
        ),
    )
    use_rep: str = "X_elmo"  # --use-rep is shared with knn
    layer: str | None = None  # --layer / --use-raw are shared with every command
    use_raw: bool | None = None
    contrast: bool = field(
        default=True,
        metadata=_flag(
            "--contrast",
            "subtract each gene's mean similarity over the classes, so that genes similar to every "
            "class text do not count",
        ),
    )
    n_genes: int = field(default=10, metadata=_flag("--n-genes", "signature genes per class", metavar="N"))
    refine: int = field(default=3, metadata=_flag("--refine", "self-training rounds (0: none)", metavar="N"))
    gene_mentions: bool = field(
        default=True,
        metadata=_flag(
            "--gene-mentions", "use the genes a class text names (e.g. 'CD14+' -> CD14, 'CD56' -> NCAM1)"
        ),
    )
    mention_weight: float = field(
        default=4.0,
        metadata=_flag(
            "--mention-weight", "weight of a named gene, in standard deviations of text affinity", metavar="W"
        ),
    )
    subtype_mentions: bool = field(
        default=True,
        metadata=_flag(
            "--subtype-mentions",
            "with --gene-mentions, also use the genes that a class's Cell Ontology subtypes name "
            "(monocyte -> CD14, FCGR3A; T cell -> CD4, CD8A)",
        ),
    )
    named_share: float = field(
        default=0.75,
        metadata=_flag(
            "--named-share",
            "share of a class signature's weight held by the genes its texts name positive (equally); "
            "0: named genes are ranked with the others by --mention-weight",
            metavar="S",
        ),
    )
    rematch: bool = field(
        default=False,
        metadata=_flag(
            "--rematch",
            "after self-training, give the refined signatures to the classes one to one, by agreement "
            "with their texts (--no-rematch: each class keeps its own)",
        ),
    )
    smooth: int = field(
        default=3,
        metadata=_flag(
            "--smooth",
            "--score genes: rounds of averaging each cell's class scores with its neighbours' (0: none); the graph is "
            "obsp['connectivities'] when present, else 15 nearest neighbours on 50 PCs of the matrix",
            metavar="N",
        ),
    )
    neighbors_key: str | None = field(
        default=None,
        metadata=_flag(
            "--neighbors-key",
            "uns key of the sc.pp.neighbors result whose graph --smooth uses",
            metavar="KEY",
            type=str,
        ),
    )
    centre: bool = field(
        default=True, metadata=_flag("--centre", "--score cell: subtract the mean cell embedding first")
    )
    scale: bool = field(
        default=True, metadata=_flag("--scale", "standardise each class score over the cells")
    )
    abstain: bool = field(
        default=True,
        metadata=_flag(
            "--abstain",
            "--score genes: compare each class signature with random genes of the same expression "
            "level: a cell that does not express its best class's genes more than random ones is "
            "unknown, and a class whose cells are supported no more often than by chance takes no cells",
        ),
    )
    abstain_level: float = field(
        default=ABSTAIN_LEVEL,
        metadata=_flag(
            "--abstain-level",
            "level of those comparisons with random signatures, in (0, 1)",
            metavar="P",
        ),
    )
    unspell: bool = field(
        default=True,
        metadata=_flag(
            "--unspell",
            "--score genes: take out of each gene's vector what its bare symbol explains, so that "
            "signatures follow gene function rather than spelling",
        ),
    )
    temperature: float | None = field(
        default=None,
        metadata=_flag(
            "--temperature",
            "probabilities are softmax(score / T); changes confidences (and so --threshold), never "
            "the top class; default: 1 for standardised scores, 0.05 for raw cosines (--no-scale)",
            metavar="T",
            type=float,
        ),
    )
    cache: bool | str | os.PathLike = True  # --no-cache is shared with the gene table
    cache_dir: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        """Refuse values no computation accepts, before anything is computed."""
        if self.score not in ("genes", "cell"):
            raise ValueError(f"`score` must be 'genes' or 'cell', got {self.score!r}.")
        if self.n_genes < 1:
            raise ValueError(f"`n_genes` must be at least 1, got {self.n_genes}.")
        if self.refine < 0:
            raise ValueError(f"`refine` must be >= 0, got {self.refine}.")
        if self.smooth < 0:
            raise ValueError(f"`smooth` must be >= 0, got {self.smooth}.")
        if not self.mention_weight >= 0:
            raise ValueError(f"`mention_weight` must be >= 0, got {self.mention_weight}.")
        if not 0 <= self.named_share <= 1:
            raise ValueError(f"`named_share` must be in [0, 1], got {self.named_share}.")
        if not 0 < self.abstain_level < 1:
            raise ValueError(f"`abstain_level` must be in (0, 1), got {self.abstain_level}.")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"`temperature` must be positive, got {self.temperature}.")

    @property
    def resolved_temperature(self) -> float:
        """The temperature used: given, else 1 for standardised scores and LangCell's 0.05 for raw cosines."""
        if self.temperature is not None:
            return self.temperature
        return 1.0 if self.scale else 0.05

    def record(self, matrix: str) -> dict[str, Any]:
        """``uns[key]['params']`` of these options: each one, or ``None`` where it did not apply.

        Parameters
        ----------
        matrix
            What was read: ``"X"``, ``"raw"``, ``"layers['name']"`` or ``"obsm['X_elmo']"``.
        """
        genes = self.score == "genes"
        return {
            "score": self.score,
            "use_rep": self.use_rep if not genes else None,
            "matrix": matrix,
            "contrast": self.contrast if genes else None,
            "n_genes": self.n_genes if genes else None,
            "refine": self.refine if genes else None,
            "gene_mentions": self.gene_mentions if genes else None,
            "mention_weight": self.mention_weight if genes and self.gene_mentions else None,
            "subtype_mentions": self.subtype_mentions if genes and self.gene_mentions else None,
            "named_share": self.named_share if genes and self.gene_mentions else None,
            "rematch": self.rematch if genes and self.refine else None,
            "smooth": self.smooth if genes else None,
            "neighbors_key": self.neighbors_key if genes and self.smooth else None,
            "centre": self.centre if not genes else None,
            "scale": self.scale,
            "abstain": self.abstain if genes else None,
            "abstain_level": self.abstain_level if genes and self.abstain else None,
            "unspell": self.unspell if genes else None,
            "temperature": self.resolved_temperature,
        }


@dataclass(frozen=True)
class LangCellZeroShotOptions:
    """Options of zero-shot LangCell (``method="langcell"``); see :func:`scelmo.models.langcell.langcell_zeroshot`.

    Examples
    --------
    >>> from scelmo.annotation._zeroshot_options import LangCellZeroShotOptions
    >>> LangCellZeroShotOptions().alpha
    0.1
    """

    alpha: float = field(
        default=ALPHA,
        metadata=_flag(
            "--alpha",
            "weight of the similarity probabilities; 1 - A goes to cell-text matching (CTM)",
            metavar="A",
        ),
    )
    use_ctm: bool = field(
        default=True, metadata=_flag("--ctm", "cell-text matching (--no-ctm: similarity only, much faster)")
    )
    temperature: float | None = None  # LangCell's scorer takes no temperature from the command line
    tokens_key: str = "langcell_tokens"  # the command tokenizes into this key itself
    batch_size: int = 32  # --batch-size is shared with the gene table's encoder
    max_pairs: int = MAX_PAIRS  # memory per batch only: the probabilities do not change
    max_tokens: int | str | None = "auto"  # memory per batch only
    ctm_top_k: int | None = field(
        default=None,
        metadata=_flag(
            "--ctm-top-k",
            "run cell-text matching only on each cell's K most similar classes (faster with many "
            "classes, approximate; default: every class, as published)",
            metavar="K",
            type=int,
        ),
    )
    device: str | torch.device | None = None  # --device is shared with the gene table's encoder
    dtype: torch.dtype | None = None  # a torch dtype object: the checkpoint's own on the command line
    text_tokenizer: Any = None  # a tokenizer object or folder; the checkpoint's own by default
    progress: bool = True  # --quiet


OPTIONS: dict[str, type[ElmoZeroShotOptions] | type[LangCellZeroShotOptions]] = {
    "elmo": ElmoZeroShotOptions,
    "langcell": LangCellZeroShotOptions,
}


def option_fields(method: str) -> tuple[dataclasses.Field, ...]:
    """The fields of a method's options (its keyword arguments in ``tl.zeroshot_annotate``).

    Examples
    --------
    >>> from scelmo.annotation._zeroshot_options import option_fields
    >>> [f.name for f in option_fields("langcell")][:2]
    ['alpha', 'use_ctm']
    """
    return dataclasses.fields(OPTIONS[method])


def build_options(method: str, options: Any = None, **given: Any) -> Any:
    """The options of ``method`` from an options object and/or keyword arguments (these win).

    Raises
    ------
    TypeError
        For a keyword that is no option of the method (the message lists them), or an options
        object of another method.

    Examples
    --------
    >>> from scelmo.annotation._zeroshot_options import build_options
    >>> build_options("elmo", n_genes=5).n_genes
    5
    """
    kind = OPTIONS[method]
    names = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TypeError(
            f"zeroshot_annotate(method={method!r}) got unknown options {unknown}; its options are {names}."
        )
    if options is None:
        return kind(**given)
    if not isinstance(options, kind):
        raise TypeError(
            f"method={method!r} takes options=scelmo.annotation.{kind.__name__}(...), got {type(options).__name__}."
        )
    return dataclasses.replace(options, **given)
