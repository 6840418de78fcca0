"""``scelmo annotate``: zero-shot labels from class texts (elmo, LangCell) or kNN transfer from a reference."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import Subcommand, add_gene_column, add_h5ad_input_output
from ._files import check_output, read_h5ad, read_text_lines, write_h5ad, write_table
from ._matrix import add_matrix_arguments, check_matrix, genes_from_column, matrix_of, require_counts
from ._runtime import CLIError
from ._tables import add_table_arguments, build_table, choose_table, load_table, table_summary

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["COMMAND", "add_arguments", "parse_labels", "read_labels_file", "run"]

METHODS = ("elmo", "langcell", "knn")


def _flagged(method: str) -> list[dataclasses.Field]:
    """The options of ``method`` that have a flag of their own (see ``annotation._zeroshot_options``)."""
    from scelmo.annotation._zeroshot_options import option_fields

    return [f for f in option_fields(method) if f.metadata.get("flag")]


def _help(option: dataclasses.Field) -> str:
    """The option's help, with the library's default unless the help says it."""
    text = option.metadata["help"]
    if "default:" in text:
        return text
    value = option.default
    if value is None:
        return f"{text}; default: none"
    if isinstance(value, bool):
        return f"{text}; default: {'on' if value else 'off'}"
    return f"{text}; default: {value}"


def _add_options(group: argparse._ArgumentGroup, method: str) -> None:
    """One flag per option of ``method``; left out, an option keeps the library's default."""
    for option in _flagged(method):
        extra = {k: v for k, v in option.metadata.items() if k not in ("flag", "help")}
        if isinstance(option.default, bool):
            extra["action"] = argparse.BooleanOptionalAction
        elif "choices" not in extra:
            extra.setdefault("type", type(option.default))
        group.add_argument(option.metadata["flag"], dest=option.name, help=_help(option), **extra)


DESCRIPTION = """\
Label cells and write obs[KEY] (predicted label, or "unknown"), obs[KEY_score] (its
confidence), obsm[KEY_probs] (class probabilities) and uns[KEY] (classes, texts,
parameters, provenance) to a new .h5ad.

  elmo      zero-shot from class names or texts: the texts are embedded by the encoder
            of the gene table (recorded in it; --encoder for tables that do not record
            it) and matched to the genes each cell expresses (scELMo).
  langcell  zero-shot with a LangCell checkpoint (cells need raw counts).
  knn       transfer --label-key from a labelled --reference .h5ad by a k-nearest-
            neighbour vote on embeddings (both embedded the same way, e.g. `scelmo embed`).

The method is knn when --reference or --label-key is given, elmo otherwise.
Class names are matched to the Cell Ontology for their texts; a TSV file
(--labels-file, lines "label<TAB>text") gives your own texts instead."""

EPILOG = """\
examples:
  # zero-shot from cell-type names, with the gene table the cells were embedded with
  scelmo annotate pbmc.h5ad -o pbmc_labels.h5ad --genes pbmc_genes.npz \\
      --labels "B cell,T cell,natural killer cell,monocyte"

  # your own class texts (label<TAB>text per line), unsure cells labelled "unknown"
  scelmo annotate pbmc.h5ad -o pbmc_labels.h5ad --genes pbmc_genes.npz \\
      --labels-file classes.tsv --threshold 0.5

  # transfer labels from an annotated reference embedded with the same table
  scelmo annotate query_elmo.h5ad -o query_labels.h5ad --reference ref_elmo.h5ad --label-key cell_type

  # LangCell zero-shot from raw counts in a layer (checkpoint folder from the LangCell authors)
  scelmo annotate pbmc.h5ad -o pbmc_lc.h5ad --method langcell --model langcell_ckpt/ \\
      --layer counts --labels-file labels.txt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``scelmo annotate`` to its ``parser`` (input/output, methods, matrix, gene table)."""
    add_h5ad_input_output(parser)
    _add_decision_arguments(parser)
    _add_zeroshot_arguments(parser)
    _add_knn_arguments(parser)
    add_matrix_arguments(
        parser,
        raw_default="elmo: the matrix `scelmo embed` used, else adata.raw when present; langcell: adata.X",
    )
    add_table_arguments(parser, batch_help="texts per encoder batch (langcell: cells per batch, default 32)")
    add_gene_column(parser, aliases=["--gene-id-key"], methods="elmo, langcell")


def _add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    """The method, the key, and when a cell is labelled unknown (every method)."""
    parser.add_argument("--method", choices=METHODS, help="elmo, langcell or knn (default: see above)")
    parser.add_argument(
        "--key-added", metavar="KEY", help="prefix of the fields written; default zeroshot (knn: knn)"
    )
    parser.add_argument(
        "--threshold", type=float, metavar="P", help="cells whose confidence is below P are labelled unknown"
    )
    parser.add_argument(
        "--min-margin",
        type=float,
        metavar="P",
        help="cells whose two best classes differ by less than P are labelled unknown",
    )
    parser.add_argument(
        "--ontology-gap",
        type=float,
        metavar="P",
        help="zero-shot: classes within P (probability) of the best one are merged into their nearest "
        "common Cell Ontology ancestor (class names must be Cell Ontology terms); default: none",
    )


def _add_zeroshot_arguments(parser: argparse.ArgumentParser) -> None:
    """The classes, and the options of elmo and langcell (one flag per field of their options)."""
    zeroshot = parser.add_argument_group("zero-shot classes (elmo, langcell)")
    labels = zeroshot.add_mutually_exclusive_group()
    labels.add_argument("--labels", metavar="'A,B,...'", help="comma-separated class names")
    labels.add_argument(
        "--labels-file",
        metavar="FILE",
        help="one class name per line, or TSV lines 'label<TAB>text' (a label may repeat: its texts are averaged)",
    )
    zeroshot.add_argument(
        "--descriptions",
        choices=["all", "definition", "name"],
        default="all",
        help="which Cell Ontology texts of a class name are used; default %(default)s",
    )
    _add_options(parser.add_argument_group("elmo zero-shot"), "elmo")
    langcell = parser.add_argument_group("langcell zero-shot")
    langcell.add_argument(
        "--model",
        metavar="DIR",
        help="LangCell checkpoint folder, or a registry name; default: the registry entry 'langcell' "
        "(set up with `scelmo fetch langcell --local DIR`)",
    )
    _add_options(langcell, "langcell")


def _add_knn_arguments(parser: argparse.ArgumentParser) -> None:
    """The reference and the vote of knn (``--use-rep`` is also elmo's with ``--score cell``)."""
    knn = parser.add_argument_group("knn transfer")
    knn.add_argument("--reference", metavar="REF.h5ad", help="labelled cells, embedded like the input")
    knn.add_argument("--label-key", metavar="COLUMN", help="obs column of the reference with the labels")
    knn.add_argument(
        "--use-rep",
        default="X_elmo",
        metavar="KEY",
        help="obsm key of the embeddings compared (knn, and elmo --score cell); default %(default)s",
    )
    knn.add_argument("-k", type=int, default=10, help="neighbours per cell; default %(default)s")
    knn.add_argument(
        "--weights",
        choices=["uniform", "distance"],
        default="uniform",
        help="vote weights; default %(default)s",
    )
    knn.add_argument("--threads", type=int, metavar="N", help="hnswlib threads (default: all cores)")


def _given(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The options of ``method`` given on the command line (the others are left to the library)."""
    return {f.name: getattr(args, f.name) for f in _flagged(method) if getattr(args, f.name) is not None}


def parse_labels(text: str) -> list[str]:
    """Class names from a comma-separated list (blanks dropped, duplicates kept once).

    Examples
    --------
    >>> from scelmo.cli._annotate import parse_labels
    >>> parse_labels(" B cell, T cell,,B cell ")
    ['B cell', 'T cell']
    """
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def read_labels_file(path: str | Path) -> list[str] | dict[str, list[str]]:
    r"""Classes from a file: one name per line, or TSV lines ``label<TAB>text``.

    Blank lines and lines starting with ``#`` are skipped; in a TSV file, a first line
    ``label<TAB>text`` is a header.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    The class names, or ``label -> [texts]`` for a TSV file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.cli._annotate import read_labels_file
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "classes.tsv"
    >>> _ = file.write_text("label\ttext\nB cell\tCD79A MS4A1\nB cell\tantibodies\nT cell\tCD3E\n")
    >>> read_labels_file(file)
    {'B cell': ['CD79A MS4A1', 'antibodies'], 'T cell': ['CD3E']}
    """
    lines = read_text_lines(path, what="labels")
    if not any("\t" in line for line in lines):
        return list(dict.fromkeys(line.strip() for line in lines))
    texts: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        label, sep, text = line.partition("\t")
        label, text = label.strip(), text.strip()
        if (
            number == 1
            and label.lower() in ("label", "class", "cell_type")
            and text.lower() in ("text", "description")
        ):
            continue
        if not sep or not label or not text:
            raise CLIError(f"labels file {path}: line {number} is not 'label<TAB>text': {line!r}")
        texts.setdefault(label, []).append(text)
    return texts


def _method(args: argparse.Namespace) -> str:
    """The method (given, or inferred from the options), after checking the options fit it."""
    method = args.method or ("knn" if args.reference or args.label_key else "elmo")
    if method == "knn":
        if not args.label_key:
            raise CLIError("knn needs --label-key, the obs column with the labels to transfer")
        if args.labels or args.labels_file:
            raise CLIError(
                "--labels/--labels-file are zero-shot classes; knn takes its labels from --label-key"
            )
        if args.k < 1:
            raise CLIError(f"-k must be at least 1, got {args.k}")
    else:
        if args.reference or args.label_key:
            raise CLIError(f"--reference/--label-key are for --method knn, not {method}")
        if not (args.labels or args.labels_file):
            raise CLIError("give the classes: --labels 'B cell,T cell,...' or --labels-file FILE")
    if method != "elmo" and (args.genes or args.source or args.encoder or args.save_genes):
        raise CLIError(f"--genes/--source/--encoder/--save-genes are for --method elmo, not {method}")
    if method != "langcell" and (args.model or _given(args, "langcell")):
        raise CLIError("--model/--alpha/--ctm/--no-ctm/--ctm-top-k are for --method langcell")
    elmo_given = [f"--{n.replace('_', '-')}" for n in _given(args, "elmo")]
    if method != "elmo" and elmo_given:
        # tl.zeroshot_annotate does not hand its temperature to LangCell's scorer.
        note = (
            " (LangCell's scorer does not take a temperature here)" if "--temperature" in elmo_given else ""
        )
        raise CLIError(f"{', '.join(elmo_given)}: options of --method elmo, not {method}{note}")
    if method == "knn" and (args.ontology_gap is not None or args.gene_column):
        raise CLIError("--ontology-gap/--gene-column are not used by knn (it compares embeddings)")
    if method == "knn" and (args.layer or args.use_raw is not None or args.device or args.batch_size):
        raise CLIError("--layer/--use-raw/--device/--batch-size are not used by knn (it compares embeddings)")
    return method


def _classes(args: argparse.Namespace) -> list[str] | dict[str, list[str]]:
    """The zero-shot classes of ``--labels`` or ``--labels-file`` (at least two)."""
    classes = read_labels_file(args.labels_file) if args.labels_file else parse_labels(args.labels)
    if len(classes) < 2:
        raise CLIError(f"zero-shot annotation needs at least two classes, got {list(classes)}")
    return classes


def _langcell_model(spec: str | None, *, progress: bool) -> str:
    """The checkpoint folder of ``--model``: a folder, or a registry entry (default ``langcell``)."""
    from scelmo import datasets

    if spec is not None and (Path(spec).exists() or "/" in spec or Path(spec).suffix):
        folder = Path(spec)
        if not folder.is_dir():
            raise CLIError(f"LangCell checkpoint folder {folder} does not exist")
        return str(folder)
    name = spec or "langcell"
    try:
        return str(datasets.fetch(name, progressbar=progress))
    except FileNotFoundError as err:
        if name != "langcell":
            raise
        raise CLIError(
            "no LangCell checkpoint: pass --model DIR (the checkpoint folder from the LangCell authors), or "
            "register it once with `scelmo fetch langcell --local DIR`"
        ) from err


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo annotate`` (see its ``--help``).

    Parameters
    ----------
    args
        The parsed options.

    Returns
    -------
    The exit code, ``0``.
    """
    from scelmo._anndata import check_key

    progress = not args.quiet
    method = _method(args)
    key = args.key_added if args.key_added is not None else ("knn" if method == "knn" else "zeroshot")
    check_key(key, "--key-added")
    out = check_output(args.output, suffix=".h5ad", force=args.force, inputs=[args.input])
    options: dict[str, Any] = {"threshold": args.threshold, "min_margin": args.min_margin, "key_added": key}
    if method != "knn" and args.ontology_gap is not None:
        options["ontology_gap"] = args.ontology_gap

    if method == "knn":
        adata = _knn(args, options)
    else:
        classes = _classes(args)
        choice = choose_table(args, force=args.force, encoder_with_table=True) if method == "elmo" else None
        adata = read_h5ad(args.input)
        check_matrix(adata, layer=args.layer, use_raw=args.use_raw)
        if method == "elmo":
            _elmo(adata, classes, choice, args, options, progress=progress)
        else:
            _langcell(adata, classes, args, options, progress=progress)
    write_h5ad(adata, out, force=args.force)
    counts = adata.obs[key].value_counts()
    counts = counts[counts > 0]
    shown = ", ".join(f"{label} {n}" for label, n in counts.head(8).items())
    more = f", ... ({len(counts)} labels)" if len(counts) > 8 else ""
    print(
        f"wrote {out}: obs[{key!r}] ({method}: {shown}{more}), obs[{key + '_score'!r}], obsm[{key + '_probs'!r}]"
    )
    return 0


def _knn(args: argparse.Namespace, options: dict[str, Any]) -> AnnData:
    """Transfer labels by kNN from ``--reference`` (or cross-validated within the input)."""
    from scelmo import tl

    adata = read_h5ad(args.input)
    reference = read_h5ad(args.reference, what="reference") if args.reference else None
    for what, data in (("input", adata), ("reference", reference)):
        if data is not None and args.use_rep != "X" and args.use_rep not in data.obsm:
            available = ", ".join(data.obsm) or "none"
            raise CLIError(
                f"{what} has no obsm[{args.use_rep!r}] (it has: {available}); embed it first with "
                "`scelmo embed` (the same --genes for both), or choose --use-rep"
            )
    tl.knn_annotate(
        adata,
        reference,
        args.label_key,
        use_rep=args.use_rep,
        k=args.k,
        weights=args.weights,
        n_threads=args.threads,
        **options,
    )
    return adata


def _elmo(
    adata: AnnData,
    classes: Any,
    choice: Any,
    args: argparse.Namespace,
    options: dict[str, Any],
    *,
    progress: bool,
) -> None:
    """Elmo zero-shot with the gene table loaded or built (``--gene-column`` names the genes)."""
    from scelmo import tl

    with genes_from_column(adata, args.gene_column, layer=args.layer, use_raw=args.use_raw):
        table = _elmo_table(adata, choice, args, progress=progress)
        tl.zeroshot_annotate(
            adata,
            classes,
            method="elmo",
            gene_embeddings=table,
            encoder=args.encoder if choice.kind != "build" else None,
            descriptions=args.descriptions,
            use_rep=args.use_rep,
            layer=args.layer,
            use_raw=args.use_raw,
            cache=args.cache,
            **_given(args, "elmo"),
            **options,
        )


def _elmo_table(adata, choice, args: argparse.Namespace, *, progress: bool):
    """The gene table of elmo zero-shot: loaded, built (and saved with ``--save-genes``), or none."""
    from scelmo._anndata import expression_matrix

    if choice.kind == "build":
        if args.score == "cell":
            return None  # the cells' embedding and its recorded encoder are used
        var_names = expression_matrix(adata, layer=args.layer, use_raw=args.use_raw).var_names
        table = build_table(var_names, args, progress=progress)
        if args.save_genes:
            out = check_output(args.save_genes, suffix=".npz", force=args.force, what="--save-genes")
            write_table(table, out, force=args.force)
            print(f"wrote {out}: gene table, {table_summary(table)}")
        return table
    return load_table(choice, trusted=args.trusted, progress=progress)


def _langcell(adata, classes, args: argparse.Namespace, options: dict[str, Any], *, progress: bool) -> None:
    """LangCell zero-shot: check the counts, resolve the checkpoint, tokenize, score."""
    from scelmo import pp, tl

    tokens_key = "langcell_tokens"
    if tokens_key not in adata.obsm:
        matrix, where = matrix_of(adata, layer=args.layer, use_raw=bool(args.use_raw))
        require_counts(matrix, where)
    model = _langcell_model(args.model, progress=progress)
    if tokens_key not in adata.obsm:
        pp.tokenize(
            adata,
            layer=args.layer,
            use_raw=bool(args.use_raw),
            gene_id_key=args.gene_column,
            key_added=tokens_key,
        )
    tl.zeroshot_annotate(
        adata,
        classes,
        method="langcell",
        model=model,
        descriptions=args.descriptions,
        tokens_key=tokens_key,
        batch_size=args.batch_size or 32,
        device=args.device,
        progress=progress,
        **_given(args, "langcell"),
        **options,
    )


COMMAND = Subcommand(
    "annotate",
    help="h5ad -> h5ad with cell-type labels: zero-shot (elmo, langcell) or kNN from a reference",
    description=DESCRIPTION,
    epilog=EPILOG,
    arguments=add_arguments,
    run=run,
)
