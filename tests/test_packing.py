"""Padding-free (packed) training, --packing: packed rewards and gradients equal the padded ones
for every decoder type the option accepts, a `helpsteer train --packing true` run's losses follow
the padded run's, NemotronH's PyTorch Mamba2 path really lets packed texts leak into each other
(why it is refused), and the refusals' exact messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from helpsteer.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoints import build  # noqa: E402

VOCAB = 120
PAD = 0


def _decoder(model_type: str):
    """A 2-layer decoder of `model_type` with a reward head, random weights, fp32."""
    import transformers as tf

    cls = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma": "Gemma"}[model_type]
    cfg = getattr(tf, f"{cls}Config")(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, head_dim=8, pad_token_id=PAD, num_labels=1, use_cache=False)
    torch.manual_seed(0)
    return getattr(tf, f"{cls}ForSequenceClassification")(cfg)


def _pairs(n: int = 6, seed: int = 1) -> list[dict]:
    """Pairs with mixed lengths (3-60 tokens, both sides differing), as the trainer's dataset rows."""
    g = torch.Generator().manual_seed(seed)

    def text():
        return torch.randint(1, VOCAB, (int(torch.randint(3, 61, (1,), generator=g)),), generator=g).tolist()

    return [{"chosen_ids": text(), "rejected_ids": text(), "strength": 1.0, "label": 1.0} for _ in range(n)]


def _trainer(tmp_path, model, attn: str):
    from rm_training.config import BTConfig
    from rm_training.trainer import RewardTrainer

    cfg = BTConfig(output_dir=str(tmp_path / "run"), backbone="llama", bf16=False, use_cpu=True, report_to="none", attn_implementation=attn)
    (model.get_base_model() if hasattr(model, "get_base_model") else model).set_attn_implementation(attn)
    return RewardTrainer(model=model, args=cfg, reward_args=cfg)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mistral", "qwen3", "gemma"])
def test_packed_rewards_and_gradients_equal_padded(model_type, attn, tmp_path):
    from rm_training.config import PACKING_MODEL_TYPES
    from rm_training.trainer import PackedCollator, PairCollator

    assert model_type in PACKING_MODEL_TYPES
    model = _decoder(model_type)
    trainer = _trainer(tmp_path, model, attn)
    features = _pairs()
    padded = PairCollator(PAD)(features)
    packed = PackedCollator(PairCollator(PAD), row_tokens=64)(features)
    assert packed["input_ids"].shape[0] > 1 and packed["input_ids"].shape[1] <= 64  # several rows, one padded
    with torch.no_grad():
        ref = trainer._forward(model, padded["input_ids"], padded["attention_mask"]).logits
        got = trainer._packed_forward(model, packed).logits
    assert got.shape == ref.shape == (12, 1)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=0)

    def grads(batch):
        model.zero_grad()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_ref, g_ref = grads(padded)
    loss_got, g_got = grads(packed)
    assert abs(loss_got - loss_ref) < 1e-6
    assert g_got.keys() == g_ref.keys()
    for n in g_ref:
        np.testing.assert_allclose(g_got[n].numpy(), g_ref[n].numpy(), atol=1e-5, rtol=1e-4, err_msg=n)


def test_packed_rewards_equal_padded_under_lora(tmp_path):
    """peft's wrapper passes the position ids through, and its copy of the head is the one hooked."""
    from peft import LoraConfig, TaskType, get_peft_model

    from rm_training.trainer import PackedCollator, PairCollator

    model = get_peft_model(_decoder("llama"), LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["score"]))
    with torch.no_grad():  # LoRA's B starts at 0: move it, so the adapters take part
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    trainer = _trainer(tmp_path, model, "sdpa")
    features = _pairs()
    padded = PairCollator(PAD)(features)
    packed = PackedCollator(PairCollator(PAD), row_tokens=64)(features)
    with torch.no_grad():
        ref = trainer._forward(model, padded["input_ids"], padded["attention_mask"]).logits
        got = trainer._packed_forward(model, packed).logits
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=0)


def test_packed_collator_rows_fields_and_order():
    from rm_training.trainer import PackedCollator, PairCollator

    features = _pairs(8, seed=2)
    lens = [len(f["chosen_ids"]) for f in features] + [len(f["rejected_ids"]) for f in features]
    padded = PairCollator(PAD)(features)
    packed = PackedCollator(PairCollator(PAD), row_tokens=100)(features)
    ids, pos, mask, ends = packed["input_ids"], packed["position_ids"], packed["attention_mask"], packed["seq_ends"]
    assert ids.shape[1] <= 100 and int(mask.sum()) == sum(lens)
    assert ids.numel() < padded["input_ids"].numel()  # fewer tokens computed than padded
    for k in ("strength", "label"):
        assert torch.equal(packed[k], padded[k])
    flat_ids, flat_pos = ids.reshape(-1), pos.reshape(-1)
    for i, n in enumerate(lens):  # text i in the padded order ends at seq_ends[i], positions 0..n-1
        e = int(ends[i])
        assert flat_pos[e - n + 1 : e + 1].tolist() == list(range(n))
        assert flat_ids[e - n + 1 : e + 1].tolist() == padded["input_ids"][i, :n].tolist()


def test_packed_collator_one_row_for_flash_attention():
    """row_tokens None (flash_attention_2): the whole batch in one row, the form transformers'
    varlen flash path reads (it detects packed texts only in a batch of one row)."""
    from rm_training.trainer import PackedCollator, PairCollator

    features = _pairs(5, seed=3)
    packed = PackedCollator(PairCollator(PAD), row_tokens=None)(features)
    total = sum(len(f["chosen_ids"]) + len(f["rejected_ids"]) for f in features)
    assert packed["input_ids"].shape == (1, total) and int(packed["attention_mask"].sum()) == total
    assert int((packed["position_ids"][0] == 0).sum()) == 10  # ten texts, no padding


def test_nemotron_h_mamba_path_leaks_across_packed_texts():
    """Why --packing refuses NemotronH: transformers' PyTorch Mamba2 path takes no boundaries, so
    the second packed text starts from the first one's conv and SSM state."""
    from rm_training.backbones import build_config
    from rm_training.modeling import NemotronHForSequenceClassification

    torch.manual_seed(0)
    model = NemotronHForSequenceClassification(build_config("tiny", vocab_size=VOCAB)).eval()
    a, b = torch.randint(1, VOCAB, (20,)), torch.randint(1, VOCAB, (30,))
    with torch.no_grad():
        alone = model(input_ids=b[None]).logits[0, 0]
        hidden = model.model(input_ids=torch.cat([a, b])[None], position_ids=torch.cat([torch.arange(20), torch.arange(30)])[None]).last_hidden_state
        packed = model.score(hidden[0, -1])[0]
    assert abs(float(packed - alone)) > 1e-3


def test_packing_refuses_unsupported_backbones(tmp_path):
    from rm_training.train import parse_config

    with pytest.raises(UsageError) as e:
        parse_config("bt", None, ["--backbone", "tiny", "--packing", "true"], tmp_path / "a")
    assert str(e.value) == ("--packing true: --backbone tiny is NemotronH, whose Mamba2 layers cannot be packed: transformers' PyTorch Mamba2 path "
                            "takes no sequence boundaries (no seq_idx in its conv1d and chunked scan), so each text would start from the state "
                            "of the one before it; use --packing false")
    bert = build("bert", tmp_path / "bert")
    with pytest.raises(UsageError) as e:
        parse_config("bt", None, ["--backbone", str(bert), "--packing", "true"], tmp_path / "b")
    assert str(e.value) == (f"--packing true: --backbone {bert} is bert; packing needs a decoder whose attention reads text boundaries from "
                            "position ids (llama, mistral, qwen2, qwen3, gemma); use --packing false")
    llama = build("llama", tmp_path / "llama")
    with pytest.raises(UsageError, match=r"^--packing_row_tokens 32 is shorter than --max_length 64: every text must fit in one row; "
                                         r"use --packing_row_tokens 64 or more$"):
        parse_config("bt", None, ["--backbone", str(llama), "--packing", "true", "--max_length", "64", "--packing_row_tokens", "32"], tmp_path / "c")
    with pytest.raises(UsageError, match=r"^--packing_row_tokens 512 with --attn_implementation flash_attention_2: transformers' flash-attention "
                                         r"reads packed texts from a single row, so each batch is packed into one; leave --packing_row_tokens unset$"):
        cfg = parse_config("bt", None, ["--backbone", str(llama), "--packing", "true", "--packing_row_tokens", "512"], tmp_path / "e")
        cfg.attn_implementation = "flash_attention_2"  # (flash itself needs a CUDA GPU: the check is called as parse_config would)
        from rm_training.train import _check_packing

        _check_packing(cfg)
    cfg = parse_config("bt", None, ["--backbone", str(llama), "--packing", "true"], tmp_path / "d")
    assert cfg.packing and cfg.packing_row_tokens is None


def test_packing_rejected_by_the_cli_before_any_work(tmp_path, capsys):
    ws = tmp_path / "ws"
    code = run_cli("train", "--workspace", ws, "--name", "nothing", "--objective", "bt", "--backbone", "tiny", "--packing", "true")
    assert code == 2
    assert not (ws / "runs").exists()


@pytest.mark.slow
def test_train_with_packing_follows_the_padded_run(tmp_path):
    from helpsteer.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(seed=5, n_prompts=24), tmp_path / "syn")
    ws = tmp_path / "ws"
    assert run_cli("ingest", tmp_path / "syn" / "helpsteer2" / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref") == 0
    ck = build("llama", tmp_path / "llama")
    losses = {}
    for packing in ("false", "true"):
        assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", ck, "--max_length", "192",
                       "--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--logging_steps", "1",
                       "--bf16", "false", "--packing", packing, "--out", f"bt-{packing}") == 0
        lines = [json.loads(x) for x in (ws / "runs" / f"bt-{packing}" / "metrics.jsonl").read_text().splitlines()]
        losses[packing] = np.array([x["loss"] for x in lines if "accuracy" in x])
    assert len(losses["true"]) == len(losses["false"]) == 8
    # the same batches in the same order: per-step losses agree to float32 round-off, and so do
    # the final weights after 8 steps at lr 1e-3 (measured on 2 CPU cores: losses within 6e-8,
    # weights within 1.2e-7)
    np.testing.assert_allclose(losses["true"], losses["false"], atol=1e-5, rtol=0)
    from safetensors.torch import load_file

    a, b = (load_file(str(ws / "runs" / f"bt-{p}" / "model.safetensors")) for p in ("true", "false"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    rc = json.loads((ws / "runs" / "bt-true" / "run_config.json").read_text())
    assert rc["config"]["packing"] is True
