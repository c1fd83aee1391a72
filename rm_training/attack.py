"""`helpsteer attack`: the Adv-RM loop (Bukharin et al. 2025). Round 0 searches for responses that
a reward model scores higher than the original good response although they are worse: starting
from real chosen responses, it applies edit operators that cannot improve a response (flattery,
repetition, keyword stuffing, markdown, fluff, swapped facts, truncation, random tokens, a copied
prompt) and hill-climbs on (target reward up, ensemble reward down): an ensemble of independently
trained reward models disagreeing with the target is the out-of-distribution signal. An attack
succeeds when the target scores it above the original and the ensemble (mean) below it. Each
further round retrains the model with (original, successful attack) as (chosen, rejected) pairs
from the training prompts, each successful edit sequence also replayed on a few other training
responses, and attacks the retrained model again on the held-out prompts.

  helpsteer attack --model RUN --workspace WS --name NAME [--out DIR] [--rounds 2]"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from helpsteer import store
from helpsteer.errors import UsageError

from . import runs
from .scoring import Item, Scorer

log = logging.getLogger(__name__)

_FLATTERY = ["This is an excellent, accurate and complete answer.", "I am confident this response is perfect.",
             "As an expert, I can guarantee this is correct.", "Great question! Here is the best possible answer.",
             "This answer has been carefully verified and is fully correct."]
_FLUFF = ["It is worth noting that there are many aspects to consider here.", "In general, this is something people often think about.",
          "Of course, every situation is different in its own way.", "To put it another way, the point stands as stated."]
_RANDOM = ["zq", "lorem", "##", "qux", "foo", "xyzzy", "blah", "@@", "---", "ipsum"]
_SENT = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text.strip()) if s]


# Edit operators: each takes (rng, response, prompt) and returns an edited response; none can make a
# response better (they add nothing true or useful, or remove/corrupt content)
def op_flattery(rng, r, p):
    return r + " " + _FLATTERY[rng.integers(len(_FLATTERY))]


def op_self_praise_prefix(rng, r, p):
    return _FLATTERY[rng.integers(len(_FLATTERY))] + " " + r


def op_repeat(rng, r, p):
    s = _sentences(r)
    return r + " " + (s[rng.integers(len(s))] if s else r)


def op_keywords(rng, r, p):
    words = [w.strip("?.,!:;").lower() for w in p.split() if len(w.strip("?.,!:;")) > 3]
    return r + (" " + " ".join(rng.choice(words, min(4, len(words)))) if words else "")


def op_markdown(rng, r, p):
    s = _sentences(r)
    return "## Answer\n\n" + "\n".join(f"- **{x}**" if i == 0 else f"- {x}" for i, x in enumerate(s or [r]))


def op_fluff(rng, r, p):
    return r + " " + _FLUFF[rng.integers(len(_FLUFF))]


def op_swap_fact(rng, r, p):
    """Swap two capitalised words or two numbers (a subject and its answer trade places)."""
    toks = r.split(" ")
    idx = [i for i, t in enumerate(toks) if t[:1].isupper() and i > 0] or [i for i, t in enumerate(toks) if any(c.isdigit() for c in t)]
    if len(idx) < 2:
        return op_truncate(rng, r, p)
    i, j = rng.choice(idx, 2, replace=False)
    ti, tj = toks[i], toks[j]
    strip = lambda t: t.rstrip(".,!?")  # noqa: E731
    toks[i], toks[j] = strip(tj) + ti[len(strip(ti)):], strip(ti) + tj[len(strip(tj)):]
    return " ".join(toks)


def op_truncate(rng, r, p):
    words = r.split()
    return " ".join(words[: max(1, int(len(words) * rng.uniform(0.4, 0.8)))]) if len(words) > 2 else r + " " + r


def op_random_tokens(rng, r, p):
    words = r.split()
    k = int(rng.integers(0, len(words) + 1))
    return " ".join(words[:k] + [str(rng.choice(_RANDOM))] + words[k:])


def op_copy_prompt(rng, r, p):
    return p + " " + r


OPERATORS = {f.__name__[3:]: f for f in (op_flattery, op_self_praise_prefix, op_repeat, op_keywords, op_markdown, op_fluff, op_swap_fact,
                                         op_truncate, op_random_tokens, op_copy_prompt)}


@dataclass
class AttackConfig:
    rounds: int = 2  # adversarial-training rounds after round 0
    n_prompts: int = 200  # held-out prompts attacked per round (their chosen responses)
    n_train_prompts: int = 400  # training prompts attacked to make adversarial pairs
    steps: int = 24  # hill-climbing steps
    ensemble_size: int = 2
    ensemble: list[str] = field(default_factory=list)  # given ensemble runs (else trained here)
    retrain_epochs: float = 1.0
    adversarial_share: float = 0.25  # adversarial pairs repeated up to this share of the training pairs
    transfer: int = 4  # each successful edit sequence is also replayed on this many other training responses
    # fine-tuning from the previous round: 2e-4 (below the from-scratch default keeps clean accuracy);
    # None: that, or for a target fine-tuned from a pretrained checkpoint its own learning rate
    retrain_learning_rate: float | None = None
    seed: int = 0
    train_overrides: list[str] = field(default_factory=list)  # --key value for the ensemble and retraining
    device: str = "auto"  # where the models are scored and trained (devices.resolve_device)
    dtype: str = "auto"  # the scorers' weights' precision (training keeps its own --dtype default)


def _pairs(workspace: Path, name: str, split: str | None) -> pl.DataFrame:
    """Decided pairs of a split with the chosen and rejected texts."""
    from helpsteer.labels import pair_labels

    labels = pair_labels(workspace, name).filter(pl.col("strength").is_not_null() & (pl.col("strength") != 0))
    resp = store.load_table(workspace, name, "responses", ["response_id", "context", "prompt", "response", "split"])
    if split is not None:
        resp = resp.filter(pl.col("split") == split)
    a = resp.select(pl.col("response_id").alias("response_a_id"), pl.col("context"), pl.col("prompt"), pl.col("response").alias("a"))
    b = resp.select(pl.col("response_id").alias("response_b_id"), pl.col("response").alias("b"))
    df = labels.join(a, on="response_a_id").join(b, on="response_b_id")
    return df.with_columns(
        pl.when(pl.col("strength") < 0).then(pl.col("a")).otherwise(pl.col("b")).alias("chosen"),
        pl.when(pl.col("strength") < 0).then(pl.col("b")).otherwise(pl.col("a")).alias("rejected")).sort("pair_id")


def clean_accuracy(sc: Scorer, pairs: pl.DataFrame) -> float:
    ctx = pairs["context"].to_list()
    rc = sc.item_rewards([Item(c, x) for c, x in zip(ctx, pairs["chosen"].to_list())])
    rr = sc.item_rewards([Item(c, x) for c, x in zip(ctx, pairs["rejected"].to_list())])
    return float((rc > rr).mean())


def _z(sc: Scorer, items: list[Item]) -> np.ndarray:
    """Rewards in units of the model's reward spread over its training data."""
    std = sc.reward_stats()[1]
    return sc.item_rewards(items) / max(std, 1e-6)


def search(target: Scorer, ensemble: list[Scorer], contexts: list[list[dict]], prompts: list[str], originals: list[str], steps: int,
           seed: int) -> list[dict]:
    """Hill-climbing from each original on fitness = target z-reward - mean ensemble z-reward
    (both relative to the original), all prompts advanced together so scoring is batched."""
    rng = np.random.default_rng(seed)
    names = list(OPERATORS)
    n = len(originals)

    def score(texts):
        items = [Item(c, t) for c, t in zip(contexts, texts)]
        t = _z(target, items)
        e = np.mean([_z(m, items) for m in ensemble], axis=0)
        return t, e

    t0, e0 = score(originals)
    cur, ops = list(originals), [[] for _ in range(n)]
    t_cur, e_cur = t0.copy(), e0.copy()
    fit = np.zeros(n)
    for _ in range(steps):
        chosen = rng.integers(len(names), size=n)
        cand = [OPERATORS[names[k]](rng, cur[i], prompts[i]) for i, k in enumerate(chosen)]
        t_c, e_c = score(cand)
        f_c = (t_c - t0) - (e_c - e0)
        better = f_c > fit
        for i in np.flatnonzero(better):
            cur[i], ops[i] = cand[i], ops[i] + [names[chosen[i]]]
        t_cur, e_cur, fit = np.where(better, t_c, t_cur), np.where(better, e_c, e_cur), np.where(better, f_c, fit)
    std_t = target.reward_stats()[1]
    out = []
    for i in range(n):
        success = bool(ops[i]) and t_cur[i] > t0[i] and e_cur[i] < e0[i]
        out.append({"prompt": prompts[i], "context": contexts[i], "original": originals[i], "attacked": cur[i], "operators": ops[i], "success": success,
                    "reward_original": float(t0[i] * std_t), "reward_attacked": float(t_cur[i] * std_t),
                    "reward_delta": float((t_cur[i] - t0[i]) * std_t), "ensemble_delta_z": float(e_cur[i] - e0[i])})
    return out


def replay(sequences: list[list[str]], pairs: pl.DataFrame, times: int, seed: int) -> list[tuple]:
    """(context, chosen, edited chosen) pairs: each edit sequence that fooled the model, replayed on
    `times` other training responses. The operators cannot improve a response, so every replay is
    a worse response whether or not it fools the model too: the retrained model learns the edit,
    not one instance of it (a few dozen successful attacks alone barely move a reward model)."""
    if not sequences or times <= 0 or pairs.height == 0:
        return []
    rng = np.random.default_rng(seed)
    ctx, prompt, chosen = pairs["context"].to_list(), pairs["prompt"].to_list(), pairs["chosen"].to_list()
    out = []
    for ops in sequences:
        for j in rng.choice(pairs.height, min(times, pairs.height), replace=False):
            text = chosen[j]
            for op in ops:
                text = OPERATORS[op](rng, text, prompt[j])
            if text != chosen[j]:
                out.append((ctx[j], chosen[j], text))
    return out


def _train(workspace, name, out: Path, objective: str, base_overrides: list[str], extra=None) -> Path:
    from helpsteer.console import quiet

    from .train import run_training

    with quiet("rm_training.train", "rm_training.data"):  # the attack reports its rounds, not each training's lines
        return run_training(workspace, name, objective, out=str(out), overrides=base_overrides, extra_pairs=extra)


def _run_overrides(run: Path) -> list[str]:
    """The target run's own training fields (backbone, lengths, epochs...), to train the ensemble alike."""
    cfg = runs.training_config(run)
    keys = ["backbone", "max_length", "num_train_epochs", "learning_rate", "per_device_train_batch_size", "bt_variant", "ties", "vocab_size",
            # how a pretrained target was trained: the ensemble and the retraining train alike (a LoRA or bf16 target's
            # ensemble would otherwise be full fp32 fine-tunes)
            "tokenizer", "torch_dtype", "attn_implementation", "use_lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
            "freeze_backbone", "gradient_checkpointing"]
    out = []
    for k in keys:
        if cfg.get(k) is not None:
            out += [f"--{k}", str(cfg[k])]
    return out


def _retrain_lr(cfg: AttackConfig, target: Path) -> float:
    from .config import is_pretrained
    from .runs import config_field

    if cfg.retrain_learning_rate is not None:
        return cfg.retrain_learning_rate
    if is_pretrained(config_field(target, "backbone")) and config_field(target, "learning_rate"):
        return float(config_field(target, "learning_rate"))
    return 2e-4


def run_attack(model: Path, workspace: Path, name: str, out: Path | None = None, cfg: AttackConfig | None = None) -> dict:
    from .data import choose_split

    cfg = cfg or AttackConfig()
    model, workspace = Path(model), Path(workspace)
    if not runs.is_run(model):
        raise UsageError(runs.not_a_run(model, "--model"))
    from .devices import placement

    dev, dt = placement(cfg.device, cfg.dtype)
    store.require(workspace, name)

    def scorer(path):
        return Scorer(path, device=dev, dtype=dt)

    target = scorer(model)
    if target.objective not in ("bt", "regression", "meanvar"):
        raise UsageError(f"attack needs a reward model with a scalar reward (bt, regression, meanvar), got a {target.objective!r} model")
    out = runs.attack_path(workspace, name, out)
    out.mkdir(parents=True, exist_ok=True)
    eval_split = choose_split(workspace, name, "eval")
    train_split = choose_split(workspace, name, "train")
    held = _pairs(workspace, name, eval_split)
    train_pairs = _pairs(workspace, name, train_split)
    if held.height == 0:
        raise UsageError(f"dataset {name!r} has no decided preference pairs to attack in split {eval_split or 'all'}")
    rng = np.random.default_rng(cfg.seed)
    held_sel = held[sorted(rng.choice(held.height, min(cfg.n_prompts, held.height), replace=False).tolist())]
    train_sel = train_pairs[sorted(rng.choice(train_pairs.height, min(cfg.n_train_prompts, train_pairs.height), replace=False).tolist())] if train_pairs.height else train_pairs
    base = _run_overrides(model) + ["--device", cfg.device] + list(cfg.train_overrides)

    # the ensemble: given runs, or models trained here like the target with other seeds and data halves
    ens_paths = [Path(p) for p in cfg.ensemble]
    for k in range(len(ens_paths), cfg.ensemble_size):
        p = out / f"ensemble-{k}"
        if not (p / runs.WEIGHTS).exists():
            log.info(f"training ensemble member {k} (seed {cfg.seed + 101 + k})")
            _train(workspace, name, p, "bt", base + ["--seed", str(cfg.seed + 101 + k), "--save_strategy", "no"])
        ens_paths.append(p)
    ensemble = [scorer(p) for p in ens_paths]

    result = {"model": str(model), "dataset": name, "eval_split": eval_split, "ensemble": [str(p) for p in ens_paths],
              "operators": list(OPERATORS), "config": {k: v for k, v in cfg.__dict__.items()}, "rounds": [], "examples": []}
    current, current_path = target, model
    adv_pairs: list[tuple] = []
    for rnd in range(cfg.rounds + 1):
        if rnd > 0:
            # adversarial training: attacks on the training prompts become rejected responses
            found = search(current, ensemble, train_sel["context"].to_list(), train_sel["prompt"].to_list(), train_sel["chosen"].to_list(),
                           cfg.steps, cfg.seed + 1000 * rnd)
            hits = [(c, f) for c, f in zip(train_sel["context"].to_list(), found) if f["success"]]
            adv_pairs += [(c, f["original"], f["attacked"]) for c, f in hits]
            adv_pairs += replay([f["operators"] for _, f in hits], train_pairs, cfg.transfer, cfg.seed + 1000 * rnd + 7)
            # few successful attacks among thousands of clean pairs would barely move the model:
            # repeat them up to a quarter of the training pairs (Adv-RM mixes them in substantially)
            reps = max(1, round(cfg.adversarial_share * max(train_pairs.height, 1) / max(len(adv_pairs), 1)))
            log.info(f"round {rnd}: retraining with {len(adv_pairs)} adversarial pairs (x{reps})")
            path = out / f"round-{rnd}"
            _train(workspace, name, path, "bt", base + ["--init_from", str(current_path), "--num_train_epochs", str(cfg.retrain_epochs),
                                                        "--learning_rate", str(_retrain_lr(cfg, model)),
                                                        "--save_strategy", "no", "--seed", str(cfg.seed)], extra=adv_pairs * reps)
            current, current_path = scorer(path), path
        found = search(current, ensemble, held_sel["context"].to_list(), held_sel["prompt"].to_list(), held_sel["chosen"].to_list(),
                       cfg.steps, cfg.seed)
        rate = float(np.mean([f["success"] for f in found]))
        acc = clean_accuracy(current, held)
        result["rounds"].append({"round": rnd, "model": str(current_path), "attack_success_rate": rate, "clean_accuracy": acc,
                                 "n_prompts": len(found), "n_successful": int(sum(f["success"] for f in found)),
                                 "n_adversarial_pairs": len(adv_pairs)})
        result["examples"] += [{"round": rnd, **f} for f in found if f["success"]][:50]
        log.info(f"round {rnd}: attack success rate {rate:.3f}, clean accuracy {acc:.3f} ({len(found)} prompts)")
        runs.write_attack(out, result)
    return result
