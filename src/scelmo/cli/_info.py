"""``scelmo info``: the installation (version, extras, data folder, registry), or what a file holds."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import Subcommand
from ._files import describe_shape, existing_file, is_hdf5, read_h5ad
from ._runtime import CLIError

if TYPE_CHECKING:
    from scelmo._records import ElmoRecord

__all__ = ["COMMAND", "add_arguments", "describe_h5ad", "describe_table", "extras_status", "run"]

DESCRIPTION = """\
Without FILE: scelmo's version, which optional extras are installed, the data folder and
the registry. With FILE: what an .h5ad holds (shape, matrices, obsm, and what scelmo wrote
into uns) or what a gene table .npz holds (genes, dimension, provenance)."""

EPILOG = """\
examples:
  # the installation: version, extras, data folder, registry
  scelmo info

  # what `scelmo embed` / `scelmo annotate` wrote into a file
  scelmo info pbmc_elmo.h5ad

  # a gene table: genes, dimension, text source, encoder, content hash
  scelmo info pbmc_genes.npz
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``scelmo info`` to its ``parser``: an optional FILE."""
    parser.add_argument("file", nargs="?", metavar="FILE", help="an .h5ad or a gene table .npz")


def extras_status() -> dict[str, list[str]]:
    """Each extra of :data:`scelmo._optional.EXTRAS` and its modules that are missing (empty: installed).

    Nothing is imported.

    Returns
    -------
    Extra -> missing import names.

    Examples
    --------
    >>> from scelmo.cli._info import extras_status
    >>> list(extras_status())[:3]
    ['models', 'offline', 'openai']
    """
    from scelmo._optional import EXTRAS, missing

    return {extra: missing(extra) for extra in EXTRAS}


def describe_installation() -> str:
    """Version, Python, extras, data folder and registry, as text lines."""
    from scelmo import __version__, datasets

    from ._fetch import list_entries

    lines = [f"scelmo {__version__} (Python {platform.python_version()})", "extras:"]
    for extra, missing in extras_status().items():
        state = "yes" if not missing else f"no (missing {', '.join(missing)}; pip install 'scelmo[{extra}]')"
        lines.append(f"  {extra:<11}{state}")
    lines.append(f"data folder: {datasets.data_dir()} (SCELMO_DATA_DIR)")
    lines.append("registry:")
    lines.extend(f"  {line}" for line in list_entries().splitlines())
    return "\n".join(lines)


#: How ``pp.tokenize`` resolved symbols through HGNC: keys ``n_<how>`` of ``uns[key]['hgnc']``.
_HGNC_COUNTS = (("symbol", "current"), ("previous", "previous"), ("alias", "alias"))


def _scelmo_record(key: str, value: Any) -> str | None:
    """A one-line summary of an ``uns`` entry written by scelmo (see :mod:`scelmo._records`), else ``None``."""
    from scelmo._records import AnnotationRecord, ElmoRecord, TokensRecord

    if ElmoRecord.matches(value):
        return _elmo_summary(key, ElmoRecord.from_mapping(value))
    if AnnotationRecord.matches(value):
        record = AnnotationRecord.from_mapping(value)
        shown = ", ".join(record.classes[:6]) + (", ..." if len(record.classes) > 6 else "")
        label_key = record.params.get("label_key")
        extra = f", label_key {label_key}" if label_key else ""
        return (
            f"{key}: annotation ({record.method}{extra}), {len(record.classes)} classes ({shown}), "
            f"{record.n_unknown} unknown"
        )
    if TokensRecord.matches(value):
        tokens = TokensRecord.from_mapping(value)
        text = f"{key}: LangCell rank tokens, {tokens.n_genes_matched} genes in the vocabulary"
        return text + (_hgnc_summary(tokens.hgnc) if tokens.hgnc else "")
    return None


def _elmo_summary(key: str, record: ElmoRecord) -> str:
    """``"X_elmo: elmo_embed, mode wa, matrix raw, 690 of 765 genes in the table (...)"``."""
    table, coverage = record.gene_table, record.coverage
    source = ", ".join(
        str(table[k]) for k in ("text_source", "model", "registry_name") if table.get(k) is not None
    )
    return (
        f"{key}: elmo_embed, mode {record.params.get('mode')}, matrix {record.matrix_source}, "
        f"{coverage.get('n_matched')} of {coverage.get('n_vars')} genes in the table"
        + (f" ({source})" if source else "")
        + (f", table {str(table['content_hash'])[:12]}" if table.get("content_hash") else "")
    )


def _hgnc_summary(hgnc: Mapping[str, Any]) -> str:
    """``", HGNC fallback on: 2 current, 1 previous, 0 alias symbols (IL8 -> CXCL8, ...)"``."""
    status = str(hgnc.get("status", "?"))
    if status != "on":
        return f", HGNC fallback {status}"
    counts = ", ".join(f"{int(hgnc.get(f'n_{how}', 0))} {label}" for how, label in _HGNC_COUNTS)
    examples = [str(example) for example in hgnc.get("examples", [])]
    shown = f" ({', '.join(examples)})" if len(examples) else ""
    return f", HGNC fallback on: {counts} symbols{shown}"


def describe_h5ad(path: Path) -> str:
    """What an ``.h5ad`` holds: shape, matrices, obs/obsm, and the ``uns`` entries scelmo wrote.

    The file is opened read-only in backed mode (the matrix stays on disk).

    Parameters
    ----------
    path
        An ``.h5ad`` file.

    Returns
    -------
    The description, one line per part of the file.
    """
    adata = read_h5ad(path, backed=True)
    try:
        lines = [f"file: {path} (AnnData h5ad)", f"cells x genes: {adata.n_obs} x {adata.n_vars}"]
        lines.append(f"X: {_matrix_kind(adata.X)}")
        if adata.raw is not None:
            lines.append(f"raw: {adata.raw.n_obs} x {adata.raw.n_vars}")
        lines.append("layers: " + (", ".join(adata.layers.keys()) or "none"))
        lines.append(
            "obsm: " + (", ".join(f"{k} ({describe_shape(adata.obsm[k])})" for k in adata.obsm) or "none")
        )
        obs = list(adata.obs.columns)
        lines.append(
            f"obs: {len(obs)} columns"
            + (f" ({', '.join(obs[:12])}{', ...' if len(obs) > 12 else ''})" if obs else "")
        )
        written: list[str] = []
        other: list[str] = []
        for key, value in adata.uns.items():
            summary = _scelmo_record(key, value)
            (written if summary else other).append(summary or key)
        lines.append("written by scelmo:" + ("" if written else " nothing"))
        lines.extend(f"  {line}" for line in written)
        lines.append("other uns keys: " + (", ".join(other) or "none"))
    finally:
        adata.file.close()
    return "\n".join(lines)


def _matrix_kind(X: Any) -> str:
    """``"sparse csr, float32"`` or ``"dense, float32"`` for a backed (or in-memory) matrix."""
    if X is None:
        return "none"
    fmt = getattr(X, "format", None) or getattr(X, "format_str", None)
    kind = f"sparse {fmt}" if isinstance(fmt, str) else "dense"
    return f"{kind}, {getattr(X, 'dtype', '?')}"


#: Provenance fields of a gene table shown on a line each, in this order.
_TABLE_FIELDS = ("text_source", "encoder", "model", "created", "saved", "n_genes_requested")


def describe_table(path: Path) -> str:
    """What a gene table ``.npz`` holds: genes, dimension, provenance.

    Parameters
    ----------
    path
        A gene table written by ``scelmo build-genes`` (or a pickle, which is refused unless trusted).

    Returns
    -------
    The description, one line per field.
    """
    from ._tables import read_table_file

    table = read_table_file(path)
    p = table.provenance
    genes = list(table.genes)
    lines = [
        f"file: {path} (gene table)",
        f"genes: {len(genes)} ({', '.join(genes[:8])}{', ...' if len(genes) > 8 else ''})",
        f"dim: {table.dim}",
        f"content hash: {table.content_hash}",
    ]
    for key in _TABLE_FIELDS:
        if key in p:
            lines.append(f"{key.replace('_', ' ')}: {p[key]}")
    if "genes_without_text" in p:
        missing = list(p["genes_without_text"])
        shown = f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if missing else ""
        lines.append(f"genes without text: {len(missing)}{shown}")
    rest = sorted(set(p) - {*_TABLE_FIELDS, "genes_without_text", "content_hash"})
    if rest:
        lines.append("other provenance: " + ", ".join(rest))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo info`` on its parsed options (see ``scelmo info --help``); exit code 0, errors raise."""
    if args.file is None:
        print(describe_installation())
        return 0
    path = existing_file(args.file, "input")
    if path.suffix == ".npz":
        print(describe_table(path))
    elif is_hdf5(path):
        print(describe_h5ad(path))
    else:
        raise CLIError(f"{path} is neither an .h5ad nor a gene table .npz")
    return 0


COMMAND = Subcommand(
    "info",
    help="version, installed extras, data folder, registry; or describe an .h5ad / gene table .npz",
    description=DESCRIPTION,
    epilog=EPILOG,
    arguments=add_arguments,
    run=run,
)
