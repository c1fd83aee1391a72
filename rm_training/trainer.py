"""RewardTrainer: transformers.Trainer whose compute_loss calls the objective's loss (rm_training/losses.py), so
accelerate/torchrun, gradient accumulation, bf16, checkpoint/resume and loggers come for free.
Logs the metric names users know from TRL (loss, accuracy, margin, mean_reward) plus tokens/s."""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from . import losses
from .scoring import pad_right


class PairCollator:
    """Chosen and rejected texts of a batch, right-padded together to the batch's longest text:
    one forward pass scores both (2B rows)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        seqs = [f["chosen_ids"] for f in features] + [f["rejected_ids"] for f in features]
        ids, mask = pad_right(seqs, self.pad_id)
        out = {
            "input_ids": ids,
            "attention_mask": mask,
            "strength": torch.tensor([f["strength"] for f in features], dtype=torch.float32),
            "label": torch.tensor([f["label"] for f in features], dtype=torch.float32),
        }
        if "rating_stats" in features[0]:  # meanvar NLL: (n, mean, var) of chosen then rejected ratings
            out["rating_stats"] = torch.tensor([f["rating_stats"][:3] for f in features] + [f["rating_stats"][3:] for f in features], dtype=torch.float32)
        return out


class RatedCollator:
    """One text and its float targets per example: the attribute ratings (regression, `targets`)."""

    key = "targets"

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        ids, mask = pad_right([f["input_ids"] for f in features], self.pad_id)
        return {"input_ids": ids, "attention_mask": mask, self.key: torch.tensor([f[self.key] for f in features], dtype=torch.float32)}


class LabelCollator(RatedCollator):
    """One text and one binary label per example (principle models)."""

    key = "label"


class PackedCollator:
    """Padding-free batches: the texts of another collator's batch (chosen then rejected for pairs,
    in its order) concatenated into rows of at most `row_tokens` tokens, first-fit from the
    longest, with position ids restarting at 0 at each text. transformers' decoders read the
    boundaries from the position ids when no attention mask is given (a block-diagonal causal mask
    for eager/SDPA, varlen kernels for flash-attention), so each text sees only itself. The other
    fields stay as the wrapped collator made them; `seq_ends` is the flat index (row * width +
    column) of each text's last token, where RewardTrainer reads its reward. `attention_mask`
    marks the real tokens (counted for tokens/s; the model is not given it). row_tokens None: the
    whole batch in one row (transformers' flash-attention takes packed texts from a single row
    only: with several it would attend across the texts of each row)."""

    def __init__(self, inner, row_tokens: int | None):
        self.inner = inner
        self.row_tokens = row_tokens

    def __call__(self, features: list[dict]) -> dict:
        out = self.inner(features)
        lens = out["attention_mask"].sum(1).tolist()
        budget = self.row_tokens or sum(lens)
        rows: list[list[int]] = []  # text indices per row
        room: list[int] = []
        for i in sorted(range(len(lens)), key=lambda i: -lens[i]):
            r = next((r for r, free in enumerate(room) if free >= lens[i]), None)
            if r is None:
                rows.append([])
                room.append(budget)
                r = len(rows) - 1
            rows[r].append(i)
            room[r] -= lens[i]
        width = max(budget - free for free in room)
        pad_id = self.inner.pad_id
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        # the padding after a row's last text is a text of its own (positions from 0 again): no
        # real token attends to it (causal) and no reward is read there
        pos = torch.arange(width).repeat(len(rows), 1)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        ends = torch.zeros(len(lens), dtype=torch.long)
        for r, members in enumerate(rows):
            at = 0
            for i in members:
                n = lens[i]
                ids[r, at : at + n] = out["input_ids"][i, :n]
                pos[r, at : at + n] = torch.arange(n)
                mask[r, at : at + n] = 1
                ends[i] = r * width + at + n - 1
                at += n
            pos[r, at:] = torch.arange(width - at)
        out.update(input_ids=ids, attention_mask=mask, position_ids=pos, seq_ends=ends)
        return out


EAGER_ATTENTION_MAX_WIDTH = 384  # on CPU, batches up to this many tokens wide train with eager attention (see RewardTrainer._call)


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length grouping (batches of similar length drawn from mega-batches of 50
    batches), with the batches then visited in random order (the longest first, as transformers
    does, so an out-of-memory error comes early). transformers walks each mega-batch from its
    longest batch to its shortest: 50 consecutive steps of ever-shorter texts. On reward data,
    where length carries signal (verbosity, detail), that sweep makes the gradient sequence far
    from i.i.d.: measured on synthetic HelpSteer2 data (small preset, 3 epochs), correctness
    Pearson 0.86 with shuffled batches vs 0.30 with the ordered sweep."""

    def __iter__(self):
        order = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        visit = [0] + (torch.randperm(len(batches) - 1, generator=self.generator) + 1).tolist()
        return iter([i for b in visit for i in batches[b]])


class RewardTrainer(Trainer):
    def __init__(self, *args, reward_args=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.reward_args = reward_args or self.args
        self.target_stats: tuple[torch.Tensor, torch.Tensor] | None = None  # regression: per-attribute (mean, std)
        self._stats: dict[str, list[float]] = defaultdict(list)
        # the outputs of the last texts trained on (the final weights' normalisation statistics
        # come from them: no extra scoring pass after training)
        self.recent_logits: deque = deque(maxlen=512)
        self._tokens = 0
        self._t0 = time.perf_counter()
        self._sdpa_model = None  # the model whose attention `_call` switches (False: leave it as it is)
        if self.compute_metrics is None:  # evaluation (--eval_strategy) reports the objective's own metrics
            self.compute_metrics = self.reward_metrics

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:  # the model leaves with the attention it came with
            if self._sdpa_model is not None and self._sdpa_model is not False:  # (a torch.compile wrapper has no truth value)
                self._sdpa_model.set_attn_implementation("sdpa")

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            # a memory-mapped dataset's column read at once as a list (the sampler indexes it per row,
            # and list(column) reads row by row: 10 s for 200k rows, [:] 0.02 s)
            lengths = sampler.lengths if isinstance(sampler.lengths, list) else sampler.lengths[:]
            return ShuffledLengthGroupedSampler(sampler.batch_size, lengths=lengths, generator=sampler.generator)
        return sampler

    def _forward(self, model, ids: torch.Tensor, mask: torch.Tensor) -> SequenceClassifierOutput:
        """The model's outputs for every row. A pair batch is padded to its longest text, but the
        two sides of a pair often differ in length: when scoring the rows in two length-sorted
        halves, each cut to its own longest row, saves at least a quarter of the padded tokens, it
        does that (rewards do not depend on padding; tested). Not under DDP, which expects one
        forward per backward."""
        lens = mask.sum(1)
        rows, width = ids.shape
        if rows >= 4 and self.args.world_size == 1:
            order = torch.argsort(lens, stable=True)
            half = rows // 2
            w_lo, w_hi = int(lens[order[:half]].max()), int(lens[order[half:]].max())
            if half * w_lo + (rows - half) * w_hi <= 0.75 * rows * width:
                lo, hi = order[:half], order[half:]
                logits = torch.cat([self._call(model, ids[lo, :w_lo], mask[lo, :w_lo]).logits,
                                    self._call(model, ids[hi, :w_hi], mask[hi, :w_hi]).logits])
                return SequenceClassifierOutput(logits=logits[torch.argsort(order)])
        return self._call(model, ids, mask)

    def _packed_forward(self, model, inputs: dict) -> SequenceClassifierOutput:
        """The rewards of a PackedCollator batch, one row per text in the unpacked order. The
        sequence-classification head scores every position (transformers' decoder heads do, then
        pool at the last non-pad token of each row, which would be one text per row here); a hook
        on the head keeps those scores and each text's reward is read at its last token. use_cache
        off: with a cache, transformers ignores packed position ids and the texts attend to each
        other."""
        base = self.accelerator.unwrap_model(model)
        base = base.get_base_model() if hasattr(base, "get_base_model") else base
        seen = []
        hook = base.score.register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            self._call(model, inputs["input_ids"], None, position_ids=inputs["position_ids"], use_cache=False)
        finally:
            hook.remove()
        scores = seen[-1]
        return SequenceClassifierOutput(logits=scores.reshape(-1, scores.shape[-1])[inputs["seq_ends"]])

    def _call(self, model, ids: torch.Tensor, mask: torch.Tensor | None, **kwargs):
        """One forward; on CPU, with attention chosen by the batch's width: SDPA's CPU kernel is
        slow on short padded batches, where plain (eager) attention trains faster. Measured on the
        tiny Llama of bench/trl_compare.py, bf16, batches with padding: 199 vs 258 ms a step at
        width 192, 293 vs 330 at 384, but 501 vs 451 at 512. Attention reads the setting at call
        time and both give the same outputs (tested); a user's own choice (flash, flex) is kept."""
        if self._sdpa_model is None:
            base = self.accelerator.unwrap_model(model)
            base = base.get_base_model() if hasattr(base, "get_base_model") else base
            cpu = self.args.device.type == "cpu"
            chosen = getattr(getattr(self, "reward_args", None), "attn_implementation", None)  # the user's own choice is kept
            self._sdpa_model = base if cpu and chosen is None and getattr(base.config, "_attn_implementation", None) == "sdpa" and hasattr(base, "set_attn_implementation") else False
        if self._sdpa_model is not False:
            want = "eager" if ids.shape[1] <= EAGER_ATTENTION_MAX_WIDTH else "sdpa"
            if self._sdpa_model.config._attn_implementation != want:
                self._sdpa_model.set_attn_implementation(want)
        return model(input_ids=ids, attention_mask=mask, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a = self.reward_args
        if "seq_ends" in inputs:  # --packing (PackedCollator)
            out = self._packed_forward(model, inputs)
        else:
            out = self._forward(model, inputs["input_ids"], inputs["attention_mask"])
        self._tokens += int(inputs["attention_mask"].sum())
        self.recent_logits.extend(out.logits.detach().float().cpu().numpy())
        x, y = out.logits, inputs.get("label")
        if a.objective == "bt":
            n = x.shape[0] // 2
            loss, stats = losses.bradley_terry(x[:n, 0], x[n:, 0], y, inputs["strength"], a.bt_variant, a.margin_scale,
                                               a.tie_weight, a.center_rewards_coefficient)
        elif a.objective == "regression":
            loss, stats = losses.regression(x, inputs["targets"], a.reward_weights, self.target_stats)
        elif a.objective == "principle":
            loss, stats = losses.principle(x[:, 0], y)
        elif a.objective == "meanvar":
            loss, stats = losses.mean_variance(x[:, 0], x[:, 1], y, a.log_var_min, a.log_var_max, inputs.get("rating_stats"), a.nll_weight)
        else:
            raise ValueError(f"unknown objective {a.objective!r}")
        for k, v in stats.items():
            self._stats[k].append(v)
        return (loss, out) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """An evaluation batch through compute_loss (eval_loss is the training loss on held-out
        data), with the training window's statistics set aside so evaluation does not leak into
        the training curve. Predictions: (pairs, 2, outputs) for pair objectives (chosen, rejected),
        (rows, outputs) otherwise; labels: `label`, or the regression `targets`."""
        inputs = self._prepare_inputs(inputs)
        kept = (self._stats, self._tokens, self.recent_logits)
        self._stats, self.recent_logits = defaultdict(list), deque(maxlen=1)
        try:
            with torch.no_grad(), self.compute_loss_context_manager():
                loss, out = self.compute_loss(model, inputs, return_outputs=True)
        finally:
            self._stats, self._tokens, self.recent_logits = kept
        if prediction_loss_only:
            return loss.detach(), None, None
        logits = out.logits.detach().float()
        if self.reward_args.objective in ("bt", "meanvar"):
            n = logits.shape[0] // 2
            logits = torch.stack([logits[:n], logits[n:]], dim=1)
        return loss.detach(), logits, inputs["targets" if self.reward_args.objective == "regression" else "label"]

    def reward_metrics(self, pred) -> dict[str, float]:
        """eval_accuracy: pairwise (chosen reward, or mean, above the rejected one) for bt and
        meanvar, of the Yes logit's sign against the label for principle; regression: MAE per
        attribute on the rating scale (eval_mae_<attribute>, over the known targets) and their mean
        (eval_mae)."""
        import numpy as np

        p, y = np.asarray(pred.predictions, dtype=np.float64), np.asarray(pred.label_ids, dtype=np.float64)
        objective = self.reward_args.objective
        if objective in ("bt", "meanvar"):
            # the side the label favours (1: the chosen, a soft label: P(chosen better)); ties
            # (label 0.5, --ties half) favour neither and are left out
            decided = y != 0.5
            right = (p[:, 0, 0] > p[:, 1, 0]) == (y > 0.5)
            return {"accuracy": float(right[decided].mean()) if decided.any() else float("nan")}
        if objective == "principle":
            return {"accuracy": float(((p[:, 0] > 0) == (y > 0.5)).mean())}
        if self.target_stats is not None:  # the model predicts z-scores during training
            p = p * self.target_stats[1].numpy() + self.target_stats[0].numpy()
        err = np.abs(p - y)
        known = ~np.isnan(y)
        per = {a: float(err[known[:, j], j].mean()) for j, a in enumerate(self.reward_args.attributes) if known[:, j].any()}
        return {"mae": float(np.mean(list(per.values()))) if per else float("nan"), **{f"mae_{a}": v for a, v in per.items()}}

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self._stats and "loss" in logs:
            # means over the logging window, averaged over processes under DDP (each process saw an
            # equal share of every global batch), so the curve is the single-process one
            keys = sorted(self._stats)
            local = torch.tensor([sum(self._stats[k]) / len(self._stats[k]) for k in keys], dtype=torch.float64, device=self.args.device)
            if self.args.world_size > 1:
                local = self.accelerator.reduce(local, reduction="mean")
            for k, v in zip(keys, local.tolist()):
                logs[k] = v
            now = time.perf_counter()
            tokens = torch.tensor([float(self._tokens)], device=self.args.device)
            if self.args.world_size > 1:
                tokens = self.accelerator.reduce(tokens, reduction="sum")
            logs["tokens_per_s"] = float(tokens) / max(now - self._t0, 1e-9)
            self._stats.clear()
            self._tokens, self._t0 = 0, now
        super().log(logs, *args, **kwargs)


class MetricsFile(TrainerCallback):
    """Every log line as one JSON object in RUN/metrics.jsonl (appended; resumed runs continue it)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not state.is_world_process_zero:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")
