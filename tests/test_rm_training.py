"""Reward-model core on tiny presets: the registered NemotronH head loads through the Auto classes,
rewards do not change with padding (either side) or batch composition, the tokenizer renders
conversations and counts truncation, and bt / regression runs train, save and evaluate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import run_cli, synthetic_workspace, write_jsonl

import rm_training  # noqa: F401  (registers the head)
from rm_training.backbones import PRESETS, build_config, flops_per_token, param_count
from rm_training.modeling import NemotronHForSequenceClassification, last_token_index
from rm_training.tokenizer import render, train_bpe


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return NemotronHForSequenceClassification(build_config("tiny", vocab_size=300, num_labels=1)).eval()


def test_reward_ignores_padding_side_and_batch_composition(tiny_model):
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(8, 300, (n,), generator=g) for n in (7, 23, 40, 16)]
    alone = [tiny_model(input_ids=s[None]).logits[0, 0].item() for s in seqs]
    width = 48
    for side in ("right", "left"):
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            if side == "right":
                ids[i, : len(s)], mask[i, : len(s)] = s, 1
            else:
                ids[i, width - len(s):], mask[i, width - len(s):] = s, 1
        batch = tiny_model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()
        assert np.allclose(batch, alone, atol=1e-5), side
    # a different batch composition: the same sequence next to other neighbours
    ids = torch.zeros((2, 40), dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[0, :7], mask[0, :7] = seqs[0], 1
    ids[1, :40], mask[1, :40] = seqs[2], 1
    assert abs(tiny_model(input_ids=ids, attention_mask=mask).logits[0, 0].item() - alone[0]) < 1e-5


def test_pair_batches_scored_in_length_sorted_halves_match_one_forward(tiny_model):
    """The trainer scores a pair batch whose texts differ much in length in two length-sorted halves
    (less padding): the outputs and the gradients equal one padded forward pass."""
    from rm_training.scoring import pad_right

    torch.manual_seed(1)
    ids, mask = pad_right([torch.randint(5, 200, (n,)).tolist() for n in (10, 12, 90, 95, 11, 80, 9, 85)], 0)
    trainer = _bare_trainer()
    grads = []
    for fwd in (lambda: trainer._forward(tiny_model, ids, mask), lambda: tiny_model(input_ids=ids, attention_mask=mask)):
        tiny_model.zero_grad()
        out = fwd().logits
        (out[:4] - out[4:]).sigmoid().log().sum().backward()
        grads.append((out.detach().clone(), torch.cat([p.grad.flatten() for p in tiny_model.parameters() if p.grad is not None])))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5)
    tiny_model.zero_grad()


def _bare_trainer():
    """A RewardTrainer with only what `_forward` reads (single process on CPU)."""
    import types

    from rm_training.trainer import RewardTrainer

    trainer = RewardTrainer.__new__(RewardTrainer)
    trainer.args = types.SimpleNamespace(world_size=1, device=torch.device("cpu"))
    trainer.accelerator = types.SimpleNamespace(unwrap_model=lambda m: m)
    trainer._sdpa_model = None
    return trainer


def test_eager_attention_on_short_batches_matches_sdpa():
    """On CPU the trainer runs batches up to EAGER_ATTENTION_MAX_WIDTH tokens wide with eager
    attention and wider ones with SDPA: the outputs and gradients equal SDPA's on padded batches,
    for a Llama (attention in every layer) and the NemotronH head."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rm_training.scoring import pad_right
    from rm_training.trainer import EAGER_ATTENTION_MAX_WIDTH

    torch.manual_seed(2)
    llama = LlamaForSequenceClassification(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                       num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=0, num_labels=1))
    nemo = NemotronHForSequenceClassification(build_config("tiny", vocab_size=300, num_labels=1))
    for model in (llama, nemo):
        assert model.config._attn_implementation == "sdpa"
        for width in (40, EAGER_ATTENTION_MAX_WIDTH + 20):
            ids, mask = pad_right([torch.randint(5, 300, (n,)).tolist() for n in (width, width // 2, width - 3, 7)], 0)
            trainer, results = _bare_trainer(), []
            for fwd in (lambda: trainer._call(model, ids, mask), lambda: model(input_ids=ids, attention_mask=mask)):
                model.zero_grad()
                out = fwd().logits
                used = model.config._attn_implementation
                model.set_attn_implementation("sdpa")
                (out[:2] - out[2:]).sigmoid().log().sum().backward()
                results.append((used, out.detach().clone(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
            assert results[0][0] == ("eager" if width <= EAGER_ATTENTION_MAX_WIDTH else "sdpa") and results[1][0] == "sdpa"
            assert torch.allclose(results[0][1], results[1][1], atol=1e-5), (type(model).__name__, width)
            assert torch.allclose(results[0][2], results[1][2], atol=1e-5), (type(model).__name__, width)


def test_last_token_index_any_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(mask, mask).tolist() == [2, 4, 4]


def test_presets_and_meta_device_counts():
    cfg = build_config("nemotron-h-8b", vocab_size=131072)
    n = param_count(cfg)
    assert 7.0e9 < n < 9.0e9  # paper-shaped, built on the meta device only
    kinds = cfg.layers_block_type  # transformers names Mamba2 layers linear_attention
    assert sum(k in ("attention", "full_attention") for k in kinds) == 4 and len(kinds) == 52
    assert sum(k in ("mamba", "linear_attention") for k in kinds) == 24
    assert flops_per_token(build_config("small", 4096), 512) > 6 * 1e6
    moe = build_config("tiny-moe", vocab_size=300)
    assert "moe" in moe.layers_block_type
    assert all(PRESETS[p].cpu for p in ("tiny", "tiny-moe", "small", "small-moe"))


def test_tokenizer_renders_and_saves(tmp_path):
    tok = train_bpe(["the capital of France is Paris"] * 20 + ["hello there"] * 20, vocab_size=300)
    text = render(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "capital?"}], "Paris")
    assert text.startswith("<s><|user|>\nhi</s>") and text.endswith("<|assistant|>\nParis</s>")
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back.pad_token == "<pad>" and back.padding_side == "right" and back.truncation_side == "left"
    enc = back([text], add_special_tokens=False, truncation=True, max_length=5)
    assert back.convert_ids_to_tokens(enc["input_ids"][0])[-1] == "</s>"  # the end of the response is kept


@pytest.fixture(scope="module")
def pref_ws(tmp_path_factory):
    return synthetic_workspace(tmp_path_factory.mktemp("rm"), seed=4, n_prompts=120, datasets=("pref", "hs2+val"))


def test_bt_run_trains_saves_loads_and_evaluates(pref_ws):
    ws = pref_ws
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--num_train_epochs", "2",
                   "--max_length", "96", "--bt_variant", "margin", "--center_rewards_coefficient", "0.01") == 0
    run = ws / "runs" / "pref-bt"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["objective"] == "bt" and cfg["reward_attributes"] == ["reward"] and cfg["reward_weights"] == [1.0]
    assert {"reward_mean", "reward_std"} <= set(cfg)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any({"loss", "accuracy", "margin", "mean_reward", "tokens_per_s"} <= set(x) for x in lines)
    card = (run / "README.md").read_text()
    assert "sha256" in card and "seed: 0" in card
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run)
    tok = AutoTokenizer.from_pretrained(run)
    assert isinstance(model, NemotronHForSequenceClassification)
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}], tokenize=False)
    enc = tok([text, text + " extra"], add_special_tokens=False, padding=True, truncation=True, max_length=96, return_tensors="pt")
    assert model(**enc).logits.shape == (2, 1)
    # a second run with the same name goes to -2
    assert run_cli("eval", "--model", run, "--workspace", ws, "--name", "pref") == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["objective"] == "bt" and ev["n_pairs"] > 0 and {"brier", "ece"} <= set(ev["calibration"])
    # the accuracy by hand from the per-pair rewards eval writes beside eval.json (negative strength: A better)
    pairs = pl.read_parquet(run / "eval_pairs.parquet").filter(pl.col("strength") != 0)
    hand = ((pairs["reward_a"] > pairs["reward_b"]) == (pairs["strength"] < 0)).mean()
    assert pairs.height == ev["n_pairs"] and ev["accuracy"] == pytest.approx(hand)


def test_regression_run_and_eval(pref_ws):
    ws = pref_ws
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", "--backbone", "tiny", "--num_train_epochs", "1", "--max_length", "96", "--out", "reg") == 0
    run = ws / "runs" / "reg"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["reward_attributes"] == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    assert cfg["reward_weights"] == [0.3, 0.74, 0.46, 0.47, -0.33]
    assert run_cli("eval", "--model", run, "--workspace", ws, "--name", "hs2") == 0
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["regression"]) == set(cfg["reward_attributes"]) and all(m["mae"] >= 0 for m in ev["regression"].values())


def test_train_errors(pref_ws, tmp_path):
    ws = pref_ws
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "nope") == 2
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--not_a_field", "1") == 2
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "regression", "--backbone", "tiny") == 2  # no ratings
    f = write_jsonl(tmp_path / "test.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    assert run_cli("ingest", f, "--workspace", ws, "--name", "only-test") == 0
    assert run_cli("train", "--workspace", ws, "--name", "only-test", "--objective", "bt", "--backbone", "tiny") == 2  # splits but no train


def test_every_yaml_config_opens_with_its_command_and_parses(tmp_path):
    from rm_training.train import parse_config

    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        m = re.match(r"# helpsteer train .*--objective (\w+) --config configs/(\S+)", f.read_text().splitlines()[0])
        assert m and m.group(2) == f.name, f
        cfg = parse_config(m.group(1), f, [], tmp_path)
        assert cfg.objective == m.group(1) and cfg.backbone in PRESETS
    cfg = parse_config("principle", f.parent / "principle-small.yaml", ["--seed", "3"], tmp_path)
    assert (cfg.principles_per_response, cfg.principle_augment, cfg.learning_rate, cfg.seed) == (10, 0.85, 2e-4, 3)  # bench/objectives.py's recipe


def _weights(run):
    from safetensors.numpy import load_file

    return load_file(str(run / "model.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(pref_ws):
    """SIGKILL mid-training, run the same command again: it resumes from the last complete
    checkpoint and ends with the weights of an uninterrupted run (max abs difference 1e-6)."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    ws = pref_ws
    common = ["train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--num_train_epochs", "2",
              "--max_length", "96", "--per_device_train_batch_size", "8", "--save_strategy", "steps", "--save_steps", "3", "--save_total_limit", "3"]
    assert run_cli(*common, "--out", "straight") == 0
    cmd = [sys.executable, "-m", "helpsteer.cli", *common, "--out", "killed"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = ws / "runs" / "killed"
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "checkpoint-6" / "trainer_state.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -9 and not (run / "model.safetensors").exists()
    assert run_cli(*common, "--out", "killed") == 0
    a, b = _weights(ws / "runs" / "straight"), _weights(run)
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-6


@pytest.mark.slow
def test_torchrun_two_processes_match_one(pref_ws):
    """torchrun --nproc_per_node 2 (gloo on CPU) trains with DDP and follows the single-process
    loss curve at the same global batch and data order (sequential sampling) within 1e-4 relative."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    ws = pref_ws
    args = ["train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--num_train_epochs", "1",
            "--max_length", "96", "--train_sampling_strategy", "sequential", "--logging_steps", "1", "--save_strategy", "no", "--learning_rate", "0.002",
            "--dataloader_drop_last", "true",  # a ragged last batch is padded differently under DDP (accelerate even_batches)
            "--bf16", "false"]  # fp32: bf16 rounding differs between a batch of 16 and two of 8
    assert run_cli(*args, "--per_device_train_batch_size", "16", "--out", "single") == 0
    # --standalone: torchrun binds a free port itself (no window for another process to take it)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "helpsteer.cli"]
    p = subprocess.Popen([*torchrun, *args, "--per_device_train_batch_size", "8", "--out", "ddp"], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    log = "\n".join(x for x in err.splitlines() if x.strip() and "it/s]" not in x)[-4000:]  # without progress bars
    assert p.returncode == 0, log
    assert "terminate called" not in err  # every rank shut its process group down before exiting

    def losses(run):
        rows = [json.loads(x) for x in (ws / "runs" / run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r and "train_loss" not in r]

    one, two = losses("single"), losses("ddp")
    assert len(one) == len(two) > 3
    assert max(abs(a - b) / abs(a) for a, b in zip(one, two)) < 1e-4
    assert (ws / "runs" / "ddp" / "model.safetensors").exists()


def test_two_stage_regression_then_scaled_bt(pref_ws):
    """HelpSteer2-Preference recipe: a regression run, then scaled BT starting from it; the BT head
    starts as the regression's helpfulness output."""
    from safetensors.numpy import load_file

    ws = pref_ws
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", "--backbone", "tiny", "--num_train_epochs", "1",
                   "--max_length", "96", "--out", "stage1") == 0
    stage1 = ws / "runs" / "stage1"
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--bt_variant", "scaled", "--init_from", stage1,
                   "--num_train_epochs", "1", "--max_length", "96", "--learning_rate", "0.0", "--out", "stage2") == 0
    w1, w2 = load_file(str(stage1 / "model.safetensors")), load_file(str(ws / "runs" / "stage2" / "model.safetensors"))
    assert np.allclose(w2["score.weight"][0], w1["score.weight"][0])  # helpfulness row (lr 0: unchanged)
    assert all(np.allclose(w1[k], w2[k]) for k in w1 if not k.startswith("score."))
    assert json.loads((ws / "runs" / "stage2" / "config.json").read_text())["reward_attributes"] == ["reward"]


def test_local_checkpoint_backbone_with_lora(pref_ws, tmp_path):
    """Any local Hugging Face checkpoint can be the backbone (a tiny Llama here), with LoRA."""
    from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForCausalLM

    tok = train_bpe(["the capital of France is Paris, the answer is four"] * 30, vocab_size=300)
    ck = tmp_path / "tiny-llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tok.pad_token_id)).save_pretrained(ck)
    tok.save_pretrained(ck)
    assert run_cli("train", "--workspace", pref_ws, "--name", "pref", "--objective", "bt", "--backbone", ck, "--use_lora", "true", "--lora_r", "4",
                   "--num_train_epochs", "1", "--max_length", "96", "--out", "llama-lora") == 0
    run = pref_ws / "runs" / "llama-lora"
    model = AutoModelForSequenceClassification.from_pretrained(run)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.objective == "bt"
    assert run_cli("eval", "--model", run, "--workspace", pref_ws, "--name", "pref") == 0


def test_regression_targets_are_standardised_and_folded_back(pref_ws):
    """Training on per-attribute z-scores, the saved head still outputs ratings: the mean prediction
    on the training responses is close to the mean label per attribute."""
    from rm_training.data import load_rated
    from rm_training.scoring import load_run, score_texts

    ws = pref_ws
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", "--backbone", "tiny", "--num_train_epochs", "1",
                   "--max_length", "96", "--out", "std") == 0
    model, tok = load_run(ws / "runs" / "std")
    assert model.score.bias is not None and model.config.score_bias
    rated = load_rated(ws, "hs2", tok, "train")
    logits, _ = score_texts(model, tok, rated.text, 96)
    means = np.nanmean(np.array(rated.targets), axis=0)
    assert np.all(np.abs(logits.mean(axis=0) - means) < 0.75)


def test_trl_reward_trainer_trains_a_platform_run(pref_ws, tmp_path):
    """An outside script can take a run's class to TRL: RewardTrainer trains the checkpoint loaded
    by path through the Auto classes, and the result saves and loads again."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    ws = pref_ws
    run = ws / "runs" / "for-trl"
    if not (run / "model.safetensors").exists():
        assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--num_train_epochs", "1",
                       "--max_length", "96", "--out", "for-trl") == 0
    out = tmp_path / "pairs.jsonl"
    assert run_cli("export", "--workspace", ws, "--name", "pref", "--format", "dpo", "--out", out) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()][:48]
    ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    model = AutoModelForSequenceClassification.from_pretrained(run)
    tok = AutoTokenizer.from_pretrained(run)
    args = RewardConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=8, num_train_epochs=1, max_length=96, report_to="none",
                        save_strategy="no", logging_steps=1, bf16=False, use_cpu=True)
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    trainer.save_model(str(tmp_path / "trl-saved"))
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "trl-saved")
    assert isinstance(again, NemotronHForSequenceClassification)


def test_torch_compile_run_saves_a_plain_checkpoint(pref_ws):
    """--torch_compile (transformers' flag) trains through the compiled wrapper and saves weights that
    load with plain transformers, with the same names as an uncompiled run's."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    ws = pref_ws
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--max_steps", "3", "--max_length", "64",
                   "--torch_compile", "true", "--save_strategy", "no", "--out", "compiled") == 0
    run = ws / "runs" / "compiled"
    keys = set(load_file(run / "model.safetensors"))
    assert keys and not any("_orig_mod" in k for k in keys) and "score.weight" in keys
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(run), NemotronHForSequenceClassification)


def test_training_in_a_pipe_shows_no_progress_bars(pref_ws, capfd):
    """The contract: long work shows progress on a terminal and stays quiet in pipes (here stderr is
    not a TTY: no tqdm bar of the Trainer, nor transformers' loading/saving bars)."""
    assert run_cli("train", "--workspace", pref_ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--max_steps", "2",
                   "--max_length", "64", "--out", "quiet") == 0
    out = capfd.readouterr()
    assert "it/s]" not in out.err and "%|" not in out.err and "it/s]" not in out.out
    assert "run written to" in out.err
