"""``se.models.LangCell``: loading the original five-part layout, checks, save/load, and the equations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _langcell_fixtures import (
    TEXT,
    ref_cell_bert,
    ref_ctm_logits,
    ref_project,
    ref_text_bert,
    write_checkpoint,
    write_vocab,
)

from scelmo.models import LangCell
from scelmo.models.langcell import CheckpointError

ATOL = 1e-5
TEXTS = [
    "cell type: t lymphocyte. a cell of the immune system",
    "cell type: monocyte.",
    "nk cell, natural killer",
]
CELLS = [
    [25426, 812, 77, 25000, 9, 1024, 3, 4, 5],
    [25426, 13, 2, 14000],
    [25426, 600, 601, 602, 603, 604],
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("langcell") / "ckpt", seed=0, with_vocab=True)


@pytest.fixture(scope="module")
def model(checkpoint) -> LangCell:
    return LangCell.from_pretrained(checkpoint.path)


def padded(cells):
    width = max(map(len, cells))
    ids = torch.tensor([c + [0] * (width - len(c)) for c in cells])
    return ids, (ids != 0).long()


def test_loads_the_original_layout_tensor_for_tensor(model, checkpoint):
    loaded = {f"cell_bert/{k}": v for k, v in model.cell_bert.state_dict().items()}
    loaded |= {f"text_bert/{k}": v for k, v in model.text_bert.state_dict().items()}
    for head in ("cell_proj", "text_proj", "ctm_head"):
        loaded |= {f"{head}/{k}": v for k, v in getattr(model, head).state_dict().items()}
    written = {f"cell_bert/{k}": v for k, v in checkpoint.cell_bert.items()}
    written |= {f"text_bert/{k}": v for k, v in checkpoint.text_bert.items()}
    for head, state in checkpoint.heads.items():
        written |= {f"{head}/{k}": v for k, v in state.items()}
    assert sorted(loaded) == sorted(written)  # nothing missing, nothing left over
    for key, value in written.items():
        assert torch.equal(loaded[key], value), key
    assert not model.training
    assert model.embed_dim == 256
    assert model.cls_token_id == 25426
    assert model.cell_bert.pooler is None
    assert model.cell_bert.config._attn_implementation == "sdpa"
    assert model.text_tokenizer is not None  # found next to text_bert/


def test_a_prefixed_cell_checkpoint_loads(tmp_path, checkpoint):
    prefixed = write_checkpoint(tmp_path / "ckpt", seed=0, cell_prefix="bert.")
    model = LangCell.from_pretrained(prefixed.path)
    assert torch.equal(
        model.cell_bert.embeddings.word_embeddings.weight,
        checkpoint.cell_bert["embeddings.word_embeddings.weight"],
    )
    assert model.text_tokenizer is None
    with pytest.raises(ValueError, match=r"no text tokenizer.*text_tokenizer="):
        model.encode_texts(["cell type: t cell"])


def _copy(checkpoint, tmp_path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(checkpoint.path, target)
    return target


def test_wrong_shape_names_the_tensor_and_both_shapes(tmp_path, checkpoint):
    path = _copy(checkpoint, tmp_path)
    state = torch.load(path / "text_bert" / "pytorch_model.bin", weights_only=True)
    state["encoder.layer.1.crossattention.self.key.weight"] = torch.zeros(48, 16)
    torch.save(state, path / "text_bert" / "pytorch_model.bin")
    with pytest.raises(
        CheckpointError,
        match=r"'text_bert/encoder\.layer\.1\.crossattention\.self\.key\.weight' has shape \(48, 16\).*expects \(48, 32\)",
    ):
        LangCell.from_pretrained(path)


def test_head_of_the_wrong_width_is_refused(tmp_path, checkpoint):
    path = _copy(checkpoint, tmp_path)
    torch.save({"weight": torch.zeros(2, 40), "bias": torch.zeros(2)}, path / "ctm_head.bin")
    with pytest.raises(CheckpointError, match=r"'ctm_head/weight' has shape \(2, 40\).*expects \(2, 48\)"):
        LangCell.from_pretrained(path)


def test_missing_and_unexpected_tensors_are_errors(tmp_path, checkpoint):
    path = _copy(checkpoint, tmp_path)
    state = torch.load(path / "cell_bert" / "pytorch_model.bin", weights_only=True)
    del state["encoder.layer.0.output.dense.bias"]
    state["encoder.layer.0.adapter.weight"] = torch.zeros(3)
    torch.save(state, path / "cell_bert" / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as err:
        LangCell.from_pretrained(path)
    assert "missing tensors: 'cell_bert/encoder.layer.0.output.dense.bias'" in str(err.value)
    assert "unexpected tensors: 'cell_bert/encoder.layer.0.adapter.weight'" in str(err.value)


def test_missing_part_and_small_vocabulary(tmp_path, checkpoint):
    path = _copy(checkpoint, tmp_path)
    (path / "text_proj.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"text_proj\.safetensors nor .*text_proj\.bin"):
        LangCell.from_pretrained(path)
    path = _copy(checkpoint, tmp_path / "b")
    config = json.loads((path / "cell_bert" / "config.json").read_text())
    config["vocab_size"] = 25426
    (path / "cell_bert" / "config.json").write_text(json.dumps(config))
    state = torch.load(path / "cell_bert" / "pytorch_model.bin", weights_only=True)
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][:25426]
    torch.save(state, path / "cell_bert" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="<cls> token 25426 is outside cell_bert's vocabulary"):
        LangCell.from_pretrained(path)


def test_save_then_load_gives_identical_outputs(model, tmp_path):
    model.save(tmp_path / "saved")
    files = sorted(
        p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("*") if p.is_file()
    )
    assert "cell_bert/model.safetensors" in files
    assert "ctm_head.safetensors" in files
    assert not [f for f in files if f.endswith(".bin")]
    again = LangCell.from_pretrained(tmp_path / "saved")
    ids, mask = padded(CELLS)
    with torch.inference_mode():
        for a, b in zip(model.encode_cells(ids, mask), again.encode_cells(ids, mask), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(model.encode_texts(TEXTS), again.encode_texts(TEXTS))
        hidden = model.encode_cells(ids, mask)[1]
        assert torch.equal(model.ctm_logits(TEXTS, hidden, mask), again.ctm_logits(TEXTS, hidden, mask))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "saved")


def test_cell_embeddings_follow_the_equations(model, checkpoint):
    ids, mask = padded(CELLS)
    with torch.inference_mode():
        emb, hidden = model.encode_cells(ids, mask)
    assert emb.shape == (3, 256)
    for b, cell in enumerate(CELLS):
        ref = ref_cell_bert(checkpoint.cell_bert, cell)
        np.testing.assert_allclose(hidden[b, : len(cell)].double(), ref, atol=ATOL)
        np.testing.assert_allclose(
            emb[b].double(), ref_project(ref[0], checkpoint.heads["cell_proj"]), atol=ATOL
        )


def test_text_embeddings_follow_the_equations(model, checkpoint):
    tokens = model.tokenize_texts(TEXTS)
    assert (tokens["input_ids"][:, 0] == 2).all()  # [CLS]
    assert (tokens["input_ids"] != 1).all()  # no [UNK]: the tiny vocabulary covers the texts
    with torch.inference_mode():
        emb = model.encode_texts(TEXTS, batch_size=2)
    for k in range(len(TEXTS)):
        ids = tokens["input_ids"][k][tokens["attention_mask"][k].bool()].tolist()
        ref = ref_text_bert(checkpoint.text_bert, ids)
        np.testing.assert_allclose(
            emb[k].double(), ref_project(ref[0], checkpoint.heads["text_proj"]), atol=ATOL
        )
    norms = torch.linalg.norm(emb, dim=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)


def test_ctm_logits_follow_the_equations(model, checkpoint):
    ids, mask = padded(CELLS)
    tokens = model.tokenize_texts(TEXTS)
    with torch.inference_mode():
        _, hidden = model.encode_cells(ids, mask)
        logits = model.ctm_logits(tokens, hidden, mask)
        cache = model.cross_attention_cache(hidden, mask)
        cached = model.ctm_logits(TEXTS, cache=cache)
        probs = model.ctm_match_probs(tokens, cache=cache)
        # Texts specific to each cell: cell b with text b only (the original's pairing).
        per_cell = {key: value.unsqueeze(1) for key, value in tokens.items()}
        paired = model.ctm_logits(per_cell, cache=cache)
    assert logits.shape == (3, 3, 2)
    assert torch.equal(logits, cached)
    np.testing.assert_allclose(probs, logits.softmax(-1)[..., 1], atol=1e-7)
    for b, cell in enumerate(CELLS):
        cell_ref = ref_cell_bert(checkpoint.cell_bert, cell)
        for k in range(len(TEXTS)):
            text_ids = tokens["input_ids"][k][tokens["attention_mask"][k].bool()].tolist()
            ref = ref_ctm_logits(
                checkpoint.heads["ctm_head"], ref_text_bert(checkpoint.text_bert, text_ids, cell_ref)[0]
            )
            np.testing.assert_allclose(logits[b, k].double(), ref, atol=ATOL)
        np.testing.assert_allclose(paired[b, 0], logits[b, b], atol=ATOL)


def test_text_bert_in_training_mode_uses_dropout(model):
    tokens = model.tokenize_texts(TEXTS[:1])
    model.text_bert.train()
    try:
        a = model.text_bert(tokens["input_ids"], tokens["attention_mask"])
        b = model.text_bert(tokens["input_ids"], tokens["attention_mask"])
    finally:
        model.text_bert.eval()
    assert not torch.equal(a, b)
    a.sum().backward()  # trainable: gradients flow
    assert model.text_bert.embeddings.word_embeddings.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_tokenizer_checks(model, tmp_path):
    with pytest.raises(TypeError, match="list of strings"):
        model.tokenize_texts("cell type: t cell")
    big = write_vocab(tmp_path / "big")
    big.write_text(big.read_text() + "\n".join(f"w{i}" for i in range(TEXT["vocab"])) + "\n")
    with pytest.raises(ValueError, match="text_bert's vocabulary has 64"):
        model.set_text_tokenizer(big)
    renamed = tmp_path / "pubmed_vocab.txt"
    shutil.copy(write_vocab(tmp_path / "small"), renamed)
    model.set_text_tokenizer(renamed)
    assert len(model.text_tokenizer) == 47


def test_text_config_without_encoder_width_uses_the_cell_width(tmp_path, checkpoint):
    path = _copy(checkpoint, tmp_path)
    config = json.loads((path / "text_bert" / "config.json").read_text())
    del config["encoder_width"]
    (path / "text_bert" / "config.json").write_text(json.dumps(config))
    assert LangCell.from_pretrained(path).text_bert.config.encoder_width == 32
