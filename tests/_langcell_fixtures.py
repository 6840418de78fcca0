"""Helpers for the LangCell tests: tiny random checkpoints in the ORIGINAL on-disk layout, a tiny
WordPiece vocabulary, and an independent plain-torch implementation of the published equations.

Nothing here uses scelmo's model code: the checkpoint is written from hand-made state dicts
(names as in Hugging Face ``BertModel`` and BLIP's ``med.py``), and the reference forward
passes are written with explicit matrix products, a hand-made softmax and LayerNorm, and the
``(1 - mask) * -10000`` additive mask, in float64.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: Small WordPiece vocabulary (BERT uncased conventions) for the text tokenizer.
WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "cell", "type", ":", ".", ",", "a", "an", "the", "of", "that", "is", "in", "and", "with",
    "t", "b", "nk", "lymph", "##ocyte", "mono", "##cyte", "natural", "killer", "immune", "system",
    "blood", "platelet", "den", "##dr", "##itic", "marker", "cd", "##4", "##8", "##14", "+",
    "express", "##es", "produces", "antibodies", "helper", "cytotoxic",
]  # fmt: skip

CELL = {
    "hidden": 32,
    "layers": 2,
    "heads": 4,
    "intermediate": 64,
    "vocab": 25427,
    "positions": 2048,
    "act": "relu",
}
TEXT = {
    "hidden": 48,
    "layers": 2,
    "heads": 4,
    "intermediate": 96,
    "vocab": 64,
    "positions": 512,
    "act": "gelu",
}
EMBED = 256
EPS = 1e-12


def write_vocab(folder: Path) -> Path:
    """A ``vocab.txt`` in ``folder`` (created); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return path


@dataclass
class TinyCheckpoint:
    """What was written: the folder and every tensor, per part."""

    path: Path
    cell_bert: dict[str, torch.Tensor]
    text_bert: dict[str, torch.Tensor]
    heads: dict[str, dict[str, torch.Tensor]]
    cell: dict = field(default_factory=lambda: dict(CELL))
    text: dict = field(default_factory=lambda: dict(TEXT))


def _rand(gen: torch.Generator, *shape: int, scale: float) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _linear(state: dict, name: str, gen: torch.Generator, n_out: int, n_in: int) -> None:
    state[f"{name}.weight"] = _rand(gen, n_out, n_in, scale=1.0 / math.sqrt(n_in))
    state[f"{name}.bias"] = _rand(gen, n_out, scale=0.1)


def _norm(state: dict, name: str, gen: torch.Generator, width: int) -> None:
    state[f"{name}.weight"] = 1.0 + _rand(gen, width, scale=0.1)
    state[f"{name}.bias"] = _rand(gen, width, scale=0.1)


def _attention(state: dict, name: str, gen: torch.Generator, hidden: int, kv_width: int) -> None:
    _linear(state, f"{name}.self.query", gen, hidden, hidden)
    _linear(state, f"{name}.self.key", gen, hidden, kv_width)
    _linear(state, f"{name}.self.value", gen, hidden, kv_width)
    _linear(state, f"{name}.output.dense", gen, hidden, hidden)
    _norm(state, f"{name}.output.LayerNorm", gen, hidden)


def _layers(state: dict, gen: torch.Generator, spec: dict, cross_width: int | None) -> None:
    h = spec["hidden"]
    for i in range(spec["layers"]):
        prefix = f"encoder.layer.{i}"
        _attention(state, f"{prefix}.attention", gen, h, h)
        if cross_width is not None:
            _attention(state, f"{prefix}.crossattention", gen, h, cross_width)
        _linear(state, f"{prefix}.intermediate.dense", gen, spec["intermediate"], h)
        _linear(state, f"{prefix}.output.dense", gen, h, spec["intermediate"])
        _norm(state, f"{prefix}.output.LayerNorm", gen, h)


def make_states(seed: int = 0, cell: dict = CELL, text: dict = TEXT) -> tuple[dict, dict, dict]:
    """Random state dicts of the five parts: ``(cell_bert, text_bert, heads)``."""
    gen = torch.Generator().manual_seed(seed)
    cell_bert: dict[str, torch.Tensor] = {}
    cell_bert["embeddings.word_embeddings.weight"] = _rand(gen, cell["vocab"], cell["hidden"], scale=1.0)
    cell_bert["embeddings.position_embeddings.weight"] = _rand(
        gen, cell["positions"], cell["hidden"], scale=0.5
    )
    cell_bert["embeddings.token_type_embeddings.weight"] = _rand(gen, 2, cell["hidden"], scale=0.5)
    _norm(cell_bert, "embeddings.LayerNorm", gen, cell["hidden"])
    _layers(cell_bert, gen, cell, None)

    text_bert: dict[str, torch.Tensor] = {}
    text_bert["embeddings.word_embeddings.weight"] = _rand(gen, text["vocab"], text["hidden"], scale=1.0)
    text_bert["embeddings.position_embeddings.weight"] = _rand(
        gen, text["positions"], text["hidden"], scale=0.5
    )
    _norm(text_bert, "embeddings.LayerNorm", gen, text["hidden"])
    _layers(text_bert, gen, text, cell["hidden"])

    heads: dict[str, dict[str, torch.Tensor]] = {}
    for name, n_out, n_in in (
        ("cell_proj", EMBED, cell["hidden"]),
        ("text_proj", EMBED, text["hidden"]),
        ("ctm_head", 2, text["hidden"]),
    ):
        heads[name] = {}
        _linear(heads[name], "x", gen, n_out, n_in)
        heads[name] = {key.removeprefix("x."): value for key, value in heads[name].items()}
    return cell_bert, text_bert, heads


def cell_config(cell: dict = CELL) -> dict:
    return {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": cell["vocab"],
        "hidden_size": cell["hidden"],
        "num_hidden_layers": cell["layers"],
        "num_attention_heads": cell["heads"],
        "intermediate_size": cell["intermediate"],
        "hidden_act": cell["act"],
        "max_position_embeddings": cell["positions"],
        "type_vocab_size": 2,
        "layer_norm_eps": EPS,
        "pad_token_id": 0,
        "hidden_dropout_prob": 0.02,
        "attention_probs_dropout_prob": 0.02,
        "initializer_range": 0.02,
    }


def text_config(text: dict = TEXT, cell: dict = CELL) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": text["vocab"],
        "hidden_size": text["hidden"],
        "num_hidden_layers": text["layers"],
        "num_attention_heads": text["heads"],
        "intermediate_size": text["intermediate"],
        "hidden_act": text["act"],
        "max_position_embeddings": text["positions"],
        "type_vocab_size": 2,
        "layer_norm_eps": EPS,
        "pad_token_id": 0,
        "encoder_width": cell["hidden"],
        "add_cross_attention": True,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }


def write_checkpoint(
    path: Path, seed: int = 0, *, cell_prefix: str = "", with_vocab: bool = False
) -> TinyCheckpoint:
    """A tiny LangCell checkpoint in the original layout (``.bin`` files via ``torch.save``).

    Like the released checkpoint, ``text_bert`` carries unused pooler weights and the
    ``position_ids`` buffer.
    """
    cell_bert, text_bert, heads = make_states(seed)
    (path / "cell_bert").mkdir(parents=True, exist_ok=True)
    (path / "text_bert").mkdir(parents=True, exist_ok=True)
    (path / "cell_bert" / "config.json").write_text(json.dumps(cell_config(), indent=2))
    (path / "text_bert" / "config.json").write_text(json.dumps(text_config(), indent=2))
    torch.save({cell_prefix + k: v for k, v in cell_bert.items()}, path / "cell_bert" / "pytorch_model.bin")
    gen = torch.Generator().manual_seed(seed + 1)
    text_file = dict(text_bert)
    text_file["embeddings.position_ids"] = torch.arange(TEXT["positions"]).unsqueeze(0)
    text_file["pooler.dense.weight"] = _rand(gen, TEXT["hidden"], TEXT["hidden"], scale=0.1)
    text_file["pooler.dense.bias"] = _rand(gen, TEXT["hidden"], scale=0.1)
    torch.save(text_file, path / "text_bert" / "pytorch_model.bin")
    for name, state in heads.items():
        torch.save(state, path / f"{name}.bin")
    if with_vocab:
        write_vocab(path / "text_bert")
    return TinyCheckpoint(path, cell_bert, text_bert, heads)


# --- the published equations, in plain float64 torch ------------------------------------------


def _d(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def _lin(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return x @ _d(state[f"{name}.weight"]).T + _d(state[f"{name}.bias"])


def _layer_norm(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS) * _d(state[f"{name}.weight"]) + _d(state[f"{name}.bias"])


def _softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def _act(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return torch.clamp(x, min=0)
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # exact (erf) GELU


def _attend(q_in, kv_in, kv_mask, state, name, n_heads):
    """One BERT attention block for a single sequence: q_in (Tq, H), kv_in (Tk, W), kv_mask (Tk,) 1/0."""
    q, k, v = (
        _lin(q_in, state, f"{name}.self.query"),
        _lin(kv_in, state, f"{name}.self.key"),
        _lin(kv_in, state, f"{name}.self.value"),
    )
    d = q.shape[-1] // n_heads
    heads = []
    for h in range(n_heads):
        qs, ks, vs = q[:, h * d : (h + 1) * d], k[:, h * d : (h + 1) * d], v[:, h * d : (h + 1) * d]
        scores = qs @ ks.T / math.sqrt(d) + (1.0 - kv_mask.to(torch.float64))[None, :] * -10000.0
        heads.append(_softmax(scores) @ vs)
    out = _lin(torch.cat(heads, -1), state, f"{name}.output.dense")
    return _layer_norm(out + q_in, state, f"{name}.output.LayerNorm")


def _ffn(x, state, prefix, act):
    inner = _act(_lin(x, state, f"{prefix}.intermediate.dense"), act)
    return _layer_norm(_lin(inner, state, f"{prefix}.output.dense") + x, state, f"{prefix}.output.LayerNorm")


def ref_cell_bert(state: dict, ids: list[int], spec: dict = CELL) -> torch.Tensor:
    """Last hidden states of ONE cell sequence (no padding), Hugging Face BERT post-LN."""
    ids_t = torch.tensor(ids)
    x = _d(state["embeddings.word_embeddings.weight"])[ids_t]
    x = x + _d(state["embeddings.position_embeddings.weight"])[: len(ids)]
    x = x + _d(state["embeddings.token_type_embeddings.weight"])[0]
    x = _layer_norm(x, state, "embeddings.LayerNorm")
    mask = torch.ones(len(ids))
    for i in range(spec["layers"]):
        x = _attend(x, x, mask, state, f"encoder.layer.{i}.attention", spec["heads"])
        x = _ffn(x, state, f"encoder.layer.{i}", spec["act"])
    return x


def ref_text_bert(
    state: dict, ids: list[int], cell_hidden: torch.Tensor | None = None, spec: dict = TEXT
) -> torch.Tensor:
    """Last hidden states of ONE text (no padding); multimodal when ``cell_hidden`` (L, W) is given."""
    ids_t = torch.tensor(ids)
    x = (
        _d(state["embeddings.word_embeddings.weight"])[ids_t]
        + _d(state["embeddings.position_embeddings.weight"])[: len(ids)]
    )
    x = _layer_norm(x, state, "embeddings.LayerNorm")
    mask = torch.ones(len(ids))
    for i in range(spec["layers"]):
        x = _attend(x, x, mask, state, f"encoder.layer.{i}.attention", spec["heads"])
        if cell_hidden is not None:
            x = _attend(
                x,
                _d(cell_hidden),
                torch.ones(cell_hidden.shape[0]),
                state,
                f"encoder.layer.{i}.crossattention",
                spec["heads"],
            )
        x = _ffn(x, state, f"encoder.layer.{i}", spec["act"])
    return x


def ref_project(x: torch.Tensor, head: dict) -> torch.Tensor:
    y = x @ _d(head["weight"]).T + _d(head["bias"])
    return y / torch.linalg.norm(y, dim=-1, keepdim=True)


def ref_ctm_logits(head: dict, cls_state: torch.Tensor) -> torch.Tensor:
    return cls_state @ _d(head["weight"]).T + _d(head["bias"])
