"""LangCell on the CPU: which numeric option to use, with the evidence.

Random weights in LangCell's published geometry (cell encoder 12 layers x 512, 8 heads,
intermediate 1024, vocabulary 25,427; text encoder PubMedBERT-base geometry, 12 layers x 768),
real full-transcriptome cells (the celltypist 10x sample, median ~1,100 tokens per cell; see
``benchmarks/langcell.py``), K = 8 class texts. Options, all in torch:

- ``fp32``: float32, SDPA attention (the reference);
- ``bf16``: ``dtype="bf16"``: bfloat16 autocast (weights stay float32);
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear`` (int8 weights,
  activations quantized per batch), float32 elsewhere.

For each: cells/s of ``encode_cell_tokens`` and of zero-shot with cell-text matching (CTM),
interleaved in rounds with fp32 so that other load on the machine slows all alike; agreement
with fp32: cosine of the cell embeddings (min and median), the largest difference of the
zero-shot probabilities, and the share of cells whose zero-shot label is the same.

Caveat: with random weights the class probabilities are close to each other, so label agreement
here is a lower bound of what trained weights (larger margins) give; the embedding cosine does
not depend on that.

Run ``python benchmarks/langcell_cpu.py`` (about 10 minutes on 2 cores; ``--cells 16`` for a
smoke run).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from langcell import CELL_GEOMETRY, CLASS_TEXTS, TEXT_BASE, dataset_cells, wordpiece_vocab

OPTIONS = ("fp32", "bf16", "int8")


def models(text_layers: int):
    import torch

    from scelmo.models import LangCell

    torch.manual_seed(0)
    text_geometry = dict(TEXT_BASE, num_hidden_layers=text_layers)
    base = LangCell.from_config(CELL_GEOMETRY, text_geometry, text_tokenizer=wordpiece_vocab()).eval()
    quantized = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8
    )
    return {"fp32": (base, None), "bf16": (base, "bf16"), "int8": (quantized, None)}


def run(n_cells: int, rounds: int, text_layers: int, zeroshot_cells: int) -> None:
    import torch

    import scelmo as se
    from scelmo.cell_tokens import CellTokens
    from scelmo.models.langcell import encode_cell_tokens, langcell_zeroshot

    adata = dataset_cells("celltypist", n_cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        se.pp.tokenize(adata)
    tokens = CellTokens.from_sparse(adata.obsm["langcell_tokens"])
    variants = models(text_layers)
    print(
        f"LangCell CPU options: {n_cells} celltypist cells (median {int(np.median(tokens.lengths)) + 1} tokens), "
        f"published geometry, random weights, K = {len(CLASS_TEXTS)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    warm = tokens.subset(np.arange(2))
    for model, dtype in variants.values():
        encode_cell_tokens(model, warm, dtype=dtype, progress=False)

    embeddings = {name: np.zeros((n_cells, 256), np.float32) for name in OPTIONS}
    seconds = dict.fromkeys(OPTIONS, 0.0)
    for part in np.array_split(np.arange(n_cells), rounds):
        for name in OPTIONS:
            model, dtype = variants[name]
            start = time.perf_counter()
            embeddings[name][part], _ = encode_cell_tokens(
                model, tokens.subset(part), dtype=dtype, progress=False
            )
            seconds[name] += time.perf_counter() - start

    zs_tokens = tokens.subset(np.arange(zeroshot_cells))
    probs, zs_seconds = {}, {}
    for name in OPTIONS:
        model, dtype = variants[name]
        start = time.perf_counter()
        result = langcell_zeroshot(model, zs_tokens, CLASS_TEXTS, dtype=dtype, progress=False)
        zs_seconds[name] = time.perf_counter() - start
        probs[name] = np.asarray(result.probs)

    print(
        f"{'option':7s} {'encode cells/s':>15s} {'vs fp32':>8s} {'cosine min':>11s} {'cosine median':>14s} "
        f"{'zero-shot cells/s':>18s} {'max |dp|':>9s} {'same label':>11s}"
    )
    for name in OPTIONS:
        cosine = np.sum(embeddings[name] * embeddings["fp32"], axis=1) / (
            np.linalg.norm(embeddings[name], axis=1) * np.linalg.norm(embeddings["fp32"], axis=1)
        )
        same = np.mean(probs[name].argmax(1) == probs["fp32"].argmax(1))
        print(
            f"{name:7s} {n_cells / seconds[name]:>15.2f} {seconds['fp32'] / seconds[name]:>7.2f}x "
            f"{cosine.min():>11.4f} {np.median(cosine):>14.4f} {zeroshot_cells / zs_seconds[name]:>18.2f} "
            f"{np.abs(probs[name] - probs['fp32']).max():>9.4f} {same:>11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=96, help="cells encoded per option")
    parser.add_argument("--zeroshot-cells", type=int, default=32, help="cells annotated per option")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--text-layers", type=int, default=12)
    args = parser.parse_args()
    run(args.cells, args.rounds, args.text_layers, args.zeroshot_cells)


if __name__ == "__main__":
    main()
