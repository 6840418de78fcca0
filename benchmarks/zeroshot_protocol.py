"""Zero-shot elmo across real labelled data sets: how its defaults are chosen, and what they give.

Protocol, version 2 (version 1, session 4, chose ``n_genes=20`` among the settings of that
time; its candidates are kept here as the row ``previous defaults``)
------------------------------------------------------------------------------------------
Data sets: the three of ``_datasets.py`` (``pbmc68k``: 7 fine classes; ``baron``: human
pancreas, 10 published classes; ``celltypist``: 5 marker-derived silver classes). Each is
annotated from its fine class names alone (``obs['fine']``, Cell Ontology labels, what a user
types) with the package's default offline gene table for that data set
(``_datasets.gene_table``); ``EVALUATION_MARKERS`` and the labels are used for scoring only.

What was built between the versions, and how: product names read from the class texts
("secretes glucagon" -> GCG), genes named by a class's Cell Ontology subtypes, a fixed share of
the signature's weight for named genes (``named_share``), scores smoothed over the cells'
neighbour graph (``smooth``), and an abstention whose class test asks whether a text gene is
among the genes most over-expressed in the class's cells. These mechanisms were designed while
looking at the failures of version 1 on all three data sets (signatures, confusion tables), so
the data sets are not independent of the *mechanisms*; the leave-one-out rule below governs only
the choice among the *settings*, and its held-out figures are out of sample for that choice only.

Candidates: :data:`CANDIDATES`, the proposed defaults (:data:`BASE`) and each one option away
from them, plus the previous defaults. Every candidate passes all its options explicitly, so its
figures do not depend on the package's defaults.

Figures per data set and candidate:
``F1``        macro-F1 over the data set's fine classes, on the cells given a class (not ``unknown``);
              a class found absent counts with F1 0;
``acc``       accuracy on those cells;
``coarse``    accuracy on those cells after mapping predicted and true fine classes to the data
              set's coarse groups;
``cov``       coverage, the fraction of cells given a class;
``F1_all``    macro-F1 over all cells with ``unknown`` counted as wrong (what abstention costs);
``sig``       signature quality: the mean over classes of the fraction of a class's text
              signature genes (``uns[key]['genes']``, before self-training) that are among its
              evaluation markers;
``sig_refined`` the same for the signatures after self-training (``refined_genes``);
``spell``     spelling share: the fraction of the 8 best text signature genes whose symbol begins
              with the first two letters of a word of the class name (or with a one-letter word:
              ``B`` of "B cell"), the failure of the issue ("B cell" -> BAX, BLVRB, B9D1); about
              0.03 for genes drawn at random (a diagnostic);
``s``         seconds for the call.

Choice rule (leave one data set out): the default must abstain (the issue asks for abstention
on by default), so only candidates with ``abstain=True`` and ``score='genes'`` are eligible; the
others are measured and printed as documented options. For each held-out data set, among the
eligible candidates whose coverage is at least 0.8 on both other data sets, take the one with
the highest worst (minimum) ``F1`` over the two other data sets; ties (within 0.005) go to the
higher mean ``F1_all`` over them, then to the earlier candidate in the list. Its figures on the
held-out data set are the protocol's out-of-sample result. The default shipped is what the same
rule picks from all three data sets (the row ``package default`` measures the package's
defaults as shipped, outside the choice). The script also prints the worst case over data sets
of every candidate, and whether the chosen default is the worst documented option anywhere.

Targets (the issue's): on every data set, ``F1 >= 0.6``, ``coarse >= 0.85``, ``cov >= 0.8``.

Run ``python benchmarks/zeroshot_protocol.py`` (first run embeds the gene tables: minutes;
later runs read results from a cache keyed by the candidate, the data set and the source code
of the annotation modules, so only changed candidates are recomputed). ``--datasets`` limits
the data sets, ``--no-cache`` recomputes everything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datasets

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

#: Protocol version 2 (session 6). The settings every candidate starts from: the defaults proposed
#: after product-name and subtype mentions, the named genes' share, graph smoothing and the
#: support-based abstention were added (see the module description).
BASE = {
    "n_genes": 10,
    "descriptions": "all",
    "contrast": True,
    "refine": 3,
    "rematch": False,
    "gene_mentions": True,
    "subtype_mentions": True,
    "named_share": 0.5,
    "smooth": 3,
    "unspell": True,
    "abstain": True,
    "abstain_level": 0.05,
}
#: The defaults shipped before version 2 (chosen by version 1 of this protocol), run with today's code.
PREVIOUS = {
    "n_genes": 20,
    "descriptions": "all",
    "contrast": True,
    "refine": 3,
    "rematch": False,
    "gene_mentions": True,
    "subtype_mentions": False,
    "named_share": 0.0,
    "smooth": 0,
    "unspell": True,
    "abstain": False,
}
#: The candidates: name -> what differs from :data:`BASE`.
CHANGES: dict[str, dict] = {
    "base": {},
    "previous defaults": {k: v for k, v in PREVIOUS.items() if BASE.get(k) != v},
    "abstain=False": {"abstain": False},
    "abstain_level=0.01": {"abstain_level": 0.01},
    "abstain_level=0.2": {"abstain_level": 0.2},
    "smooth=0": {"smooth": 0},
    "smooth=1": {"smooth": 1},
    "smooth=10": {"smooth": 10},
    "named_share=0": {"named_share": 0.0},
    "named_share=0.25": {"named_share": 0.25},
    "named_share=0.75": {"named_share": 0.75},
    "subtype_mentions=False": {"subtype_mentions": False},
    "gene_mentions=False": {"gene_mentions": False},
    "n_genes=5": {"n_genes": 5},
    "n_genes=20": {"n_genes": 20},
    "refine=0": {"refine": 0},
    "refine=1": {"refine": 1},
    "rematch=True": {"rematch": True},
    "contrast=False": {"contrast": False},
    "descriptions='definition'": {"descriptions": "definition"},
    "descriptions='name'": {"descriptions": "name"},
    "unspell=False": {"unspell": False},
    "score='cell'": {"score": "cell"},
}
CANDIDATES: dict[str, dict] = {name: {**BASE, **change} for name, change in CHANGES.items()}
#: Candidates the default may be chosen from: those that abstain (see the choice rule).
ELIGIBLE = [c for c, o in CANDIDATES.items() if o.get("abstain") and o.get("score", "genes") == "genes"]
#: The issue's targets.
TARGET_F1, TARGET_COARSE, TARGET_COVERAGE = 0.6, 0.85, 0.8
MIN_COVERAGE = 0.8
TIE = 0.005
NONSENSE = "xyzzy cell"
_SOURCES = (
    "annotation/_elmo_zeroshot.py",
    "annotation/_zeroshot_options.py",
    "annotation/_elmo_text.py",
    "annotation/_elmo_genes.py",
    "annotation/_elmo_cells.py",
    "annotation/_elmo_record.py",
    "annotation/_standardised.py",
    "annotation/_elmo_signatures.py",
    "annotation/_elmo_refine.py",
    "annotation/_zeroshot.py",
    "annotation/_abstention.py",
    "annotation/_descriptions.py",
    "annotation/_gene_mentions.py",
    "annotation/_go_affinity.py",
    "annotation/_smoothing.py",
    "annotation/_elmo_null.py",
    "annotation/_ontology.py",
    "tl/_zeroshot_annotate.py",
    "text/sources/_offline.py",
)


def _code_version() -> str:
    root = Path(__file__).resolve().parents[1] / "src" / "scelmo"
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = root / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_path() -> Path:
    from scelmo.datasets import data_dir

    path = data_dir() / "evaluation" / "zeroshot_protocol.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _read_cache() -> dict:
    path = _cache_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    tmp.replace(path)


_NOT_NAMES = {"cell", "type", "positive", "negative", "alpha", "beta", "of", "the", "and"}


def spelling_share(cls: str, genes) -> float:
    """Fraction of ``genes`` whose symbol begins like a word of the class name (see the protocol)."""
    import re

    words = [w for w in re.split(r"[^A-Za-z0-9]+", cls.lower()) if w and w not in _NOT_NAMES]
    prefixes = {w[:2] for w in words}
    genes = [str(g) for g in genes if not str(g).startswith("-")]
    if not genes:
        return 0.0
    return float(np.mean([any(g.lower().startswith(p) for p in prefixes) for g in genes]))


def _fraction_markers(genes, markers) -> float:
    genes = [g for g in genes if not str(g).startswith("-")]
    return float(np.mean([g in markers for g in genes])) if genes else 0.0


def evaluate(adata, table, options: dict, classes: list[str], coarse_of: dict[str, str]) -> dict:
    """Run one candidate on one data set and score it (see the protocol)."""
    from sklearn.metrics import f1_score

    import scelmo as se

    kwargs = {"gene_embeddings": table, "use_raw": False, **options}
    if kwargs.get("score") == "cell":
        kwargs.pop("use_raw")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("unspell", "abstain")}
    began = time.perf_counter()
    se.tl.zeroshot_annotate(adata, classes, key_added="zs", **kwargs)
    seconds = time.perf_counter() - began
    truth = adata.obs["fine"].astype(str).to_numpy()
    pred = adata.obs["zs"].astype(str).to_numpy()
    labelled = np.isin(pred, classes)
    out = {"cov": float(labelled.mean()), "s": seconds}
    if labelled.any():
        out["F1"] = float(
            f1_score(truth[labelled], pred[labelled], labels=classes, average="macro", zero_division=0)
        )
        out["acc"] = float((truth[labelled] == pred[labelled]).mean())
        out["coarse"] = float(
            np.mean(
                [coarse_of[t] == coarse_of[p] for t, p in zip(truth[labelled], pred[labelled], strict=True)]
            )
        )
    else:
        out.update(F1=0.0, acc=0.0, coarse=0.0)
    out["F1_all"] = float(f1_score(truth, pred, labels=classes, average="macro", zero_division=0))
    uns = adata.uns["zs"]
    markers = _datasets.EVALUATION_MARKERS
    genes = {c: list(uns.get("genes", {}).get(c, [])) for c in classes}
    refined = {c: list(uns.get("refined_genes", {}).get(c, genes[c])) for c in classes}
    if any(genes.values()):
        out["sig"] = float(np.mean([_fraction_markers(genes[c], set(markers.get(c, ()))) for c in classes]))
        out["sig_refined"] = float(
            np.mean([_fraction_markers(refined[c], set(markers.get(c, ()))) for c in classes])
        )
        out["genes"] = {c: genes[c][:8] for c in classes}
        out["refined"] = {c: refined[c][:8] for c in classes}
    out["taken"] = {c: int((pred == c).sum()) for c in classes}
    out["taken"]["unknown"] = int((~labelled).sum())
    return out


def run(
    datasets: list[str], *, use_cache: bool = True, nonsense: bool = True, only: list[str] | None = None
) -> dict:
    """Every candidate (or those in ``only``) on every data set: ``{dataset: {candidate: figures}}``."""
    import scelmo as se

    version = _code_version()
    cache = _read_cache() if use_cache else {}
    results: dict[str, dict] = {}
    for name in datasets:
        adata = table = None
        results[name] = {}
        todo = {c: o for c, o in CANDIDATES.items() if only is None or c in only}
        todo["package default"] = {}
        if nonsense:
            todo[f"default + '{NONSENSE}'"] = {"__nonsense__": True}
            todo[f"default, abstain=False + '{NONSENSE}'"] = {"__nonsense__": True, "abstain": False}
        for candidate, options in todo.items():
            key = f"{version}|{name}|{candidate}|{json.dumps(options, sort_keys=True)}"
            if key in cache:
                results[name][candidate] = cache[key]
                continue
            if adata is None:
                adata = _datasets.load(name)
                table = _datasets.gene_table(adata, progress=False)
                se.tl.elmo_embed(adata, table, progress=False)
            classes = _datasets.classes(adata)
            coarse_of = dict(zip(adata.obs["fine"].astype(str), adata.obs["coarse"].astype(str), strict=True))
            options = dict(options)
            if options.pop("__nonsense__", False):
                classes = [*classes, NONSENSE]
                coarse_of[NONSENSE] = NONSENSE
            figures = evaluate(adata, table, options, classes, coarse_of)
            results[name][candidate] = cache[key] = figures
            _write_cache(cache)
            print(f"  {name:10s} {candidate:32s} F1 {figures['F1']:.3f} cov {figures['cov']:.3f}", flush=True)
    return results


def choose(results: dict, datasets: list[str]) -> str:
    """The protocol's rule on ``datasets``: best worst-case F1 among candidates covering >= 0.8."""
    best, best_key = None, None
    for candidate in ELIGIBLE:
        rows = [results[d][candidate] for d in datasets]
        if min(r["cov"] for r in rows) < MIN_COVERAGE:
            continue
        worst = min(r["F1"] for r in rows)
        mean_all = float(np.mean([r["F1_all"] for r in rows]))
        if (
            best_key is None
            or worst > best_key[0] + TIE
            or (abs(worst - best_key[0]) <= TIE and mean_all > best_key[1])
        ):
            best, best_key = candidate, (worst, mean_all)
    if best is None:  # no candidate covers 0.8 everywhere: fall back to the best worst F1_all
        best = max(ELIGIBLE, key=lambda c: min(results[d][c]["F1_all"] for d in datasets))
    return best


def tables(results: dict, datasets: list[str]) -> dict[str, pd.DataFrame]:
    """The printed tables: per data set figures, leave-one-out choices, worst cases, signatures."""
    rows = []
    for d in datasets:
        for candidate, r in results[d].items():
            spell = (
                float(np.mean([spelling_share(c, g) for c, g in r["genes"].items()]))
                if r.get("genes")
                else np.nan
            )
            rows.append(
                {
                    "dataset": d,
                    "candidate": candidate,
                    **{
                        k: r.get(k, np.nan)
                        for k in ("F1", "acc", "coarse", "cov", "F1_all", "sig", "sig_refined")
                    },
                    "spell": spell,
                    "s": r.get("s", np.nan),
                }
            )
    figures = pd.DataFrame(rows)
    wide = figures.pivot(index="candidate", columns="dataset", values=["F1", "coarse", "cov"])
    wide = wide.loc[[c for c in results[datasets[0]] if c in wide.index]]
    worst = pd.DataFrame(
        {
            "worst F1": figures[figures.candidate.isin(CANDIDATES)].groupby("candidate")["F1"].min(),
            "worst coarse": figures[figures.candidate.isin(CANDIDATES)].groupby("candidate")["coarse"].min(),
            "worst cov": figures[figures.candidate.isin(CANDIDATES)].groupby("candidate")["cov"].min(),
            "worst F1_all": figures[figures.candidate.isin(CANDIDATES)].groupby("candidate")["F1_all"].min(),
        }
    ).loc[list(CANDIDATES)]
    lodo = []
    for held in datasets:
        others = [d for d in datasets if d != held]
        if not others:
            continue
        chosen = choose(results, others)
        r = results[held][chosen]
        rank = 1 + sum(results[held][c]["F1"] > r["F1"] for c in CANDIDATES)
        lodo.append(
            {
                "held out": held,
                "chosen on the others": chosen,
                "F1": r["F1"],
                "acc": r["acc"],
                "coarse": r["coarse"],
                "cov": r["cov"],
                "F1_all": r["F1_all"],
                "rank of F1 among candidates": f"{rank}/{len(CANDIDATES)}",
                "best candidate here": max(CANDIDATES, key=lambda c: results[held][c]["F1"]),
                "best F1 here": max(results[held][c]["F1"] for c in CANDIDATES),
            }
        )
    return {"figures": figures, "wide": wide, "worst": worst, "lodo": pd.DataFrame(lodo)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(_datasets.DATASETS), choices=_datasets.DATASETS)
    parser.add_argument("--no-cache", action="store_true", help="recompute every figure")
    parser.add_argument("--genes", action="store_true", help="print each class's signature genes")
    parser.add_argument(
        "--only", nargs="+", default=None, help="run only these candidates (figures only, no choice)"
    )
    args = parser.parse_args()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.max_colwidth", 60)
    datasets = args.datasets
    results = run(datasets, use_cache=not args.no_cache, only=args.only)
    if args.only:
        rows = [
            {"dataset": d, "candidate": c, **{k: v for k, v in r.items() if not isinstance(v, dict)}}
            for d in datasets
            for c, r in results[d].items()
        ]
        print(pd.DataFrame(rows).round(3).to_string(index=False))
        for d in datasets:
            for c, r in results[d].items():
                print(f"{d} {c}: taken {r['taken']}")
                for k, genes in r.get("genes", {}).items():
                    print(f"    {k}: {', '.join(genes)}  ->  {', '.join(r['refined'][k])}")
        return
    out = tables(results, datasets)
    print("\nZero-shot elmo from class names alone; every candidate on every data set")
    print(
        "(F1: macro-F1 of labelled cells; coarse: accuracy of labelled cells on coarse groups; cov: coverage;"
    )
    print(" F1_all: macro-F1 with unknown counted wrong; sig / sig_refined: fraction of signature genes that")
    print(" are evaluation markers of the class, text signature / after self-training; spell: share of the")
    print(" 8 best text genes spelled like the class name; s: seconds)")
    print(out["figures"].round(3).to_string(index=False))
    print("\nWorst case over data sets, per candidate")
    print(out["worst"].round(3).to_string())
    if len(datasets) > 1:
        print(
            "\nLeave one data set out: chosen on the others by the protocol's rule, scored on the held-out one"
        )
        print(out["lodo"].round(3).to_string(index=False))
        final = choose(results, datasets)
        print(f"\nThe rule on all {len(datasets)} data sets picks: {final!r}")
        for d in datasets:
            r = results[d][final]
            worst_option = min(CANDIDATES, key=lambda c, d=d: results[d][c]["F1"])
            reached = r["F1"] >= TARGET_F1 and r["coarse"] >= TARGET_COARSE and r["cov"] >= TARGET_COVERAGE
            print(
                f"  {d:10s} F1 {r['F1']:.3f}  coarse {r['coarse']:.3f}  cov {r['cov']:.3f}  "
                f"targets (F1>={TARGET_F1}, coarse>={TARGET_COARSE}, cov>={TARGET_COVERAGE}): "
                f"{'reached' if reached else 'NOT reached'}; worst option here: {worst_option!r} "
                f"({results[d][worst_option]['F1']:.3f}){'  <- the default is the worst' if worst_option == final else ''}"
            )
    print(f"\nA nonsense class added to the data set's classes ({NONSENSE!r}): cells it takes")
    for setting in ("default", "default, abstain=False"):
        nonsense = f"{setting} + '{NONSENSE}'"
        for d in datasets:
            if nonsense in results[d]:
                r = results[d][nonsense]
                print(
                    f"  {setting:21s} {d:10s} {r['taken'].get(NONSENSE, 0)} of {sum(r['taken'].values())} cells; "
                    f"F1 of the real classes {r['F1']:.3f}, cov {r['cov']:.3f}"
                )
    if args.genes:
        shown = choose(results, datasets) if len(datasets) > 1 else "base"
        for d in datasets:
            r = results[d][shown]
            print(f"\n{d}: signatures of {shown!r} (text -> after self-training)")
            for c, genes in r.get("genes", {}).items():
                print(f"  {c}: {', '.join(genes)}  ->  {', '.join(r['refined'][c])}")


if __name__ == "__main__":
    main()
