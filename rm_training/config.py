"""Run configs: one dataclass per objective family, extending transformers' TrainingArguments, so
`--num_train_epochs 3 --per_device_train_batch_size 16 --learning_rate 1e-4` and a YAML file both
work (`helpsteer train ... --config configs/bt-small.yaml --key value`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal, Optional, get_args

from transformers import TrainingArguments

from helpsteer.errors import UsageError
from helpsteer.schema import HELPSTEER_ATTRIBUTES

from .devices import DTYPE_NAMES
from .runs import config_field

# Nemotron-4-340B-Reward: scalar reward from the five HelpSteer attributes
NEMOTRON_WEIGHTS = {"helpfulness": 0.3, "correctness": 0.74, "coherence": 0.46, "complexity": 0.47, "verbosity": -0.33}


def native_bf16(device=None) -> bool:
    """Whether bf16 matmuls run natively on `device` (default: CUDA when present, else the CPU): a
    CUDA GPU with bf16, or a CPU whose oneDNN has bf16 kernels (AVX512-BF16 / AMX). Elsewhere bf16
    is emulated and slower than fp32."""
    import torch

    on_gpu = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if on_gpu:
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# Defaults that depend on where the weights start (TrainingArguments fields left unset take these):
# a preset trained from scratch, or a pretrained checkpoint fine-tuned (--backbone DIR), where a
# high rate would wreck the pretrained features (TRL's reward recipes fine-tune at 1e-5 to 1e-4).
SCRATCH = {"learning_rate": 5e-4, "num_train_epochs": 3.0, "warmup_steps": 0.05}
FINETUNE = {"learning_rate": 5e-5, "num_train_epochs": 2.0, "warmup_steps": 0.1}
DTYPES = DTYPE_NAMES  # --torch_dtype takes the same spellings as --dtype
ATTENTION = ("eager", "sdpa", "flash_attention_2")
# The closed sets of the string fields: HfArgumentParser offers them as choices, and
# RewardConfig.validate checks them for every caller (a YAML file, --key value, Python)
Dtype = Literal["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"]
Attention = Literal["eager", "sdpa", "flash_attention_2"]
Ties = Literal["drop", "half"]
BtVariant = Literal["plain", "margin", "scaled"]
SamplingStrategy = Literal["group_by_length", "random", "sequential", "batch_rebalance"]  # (transformers' four)
assert set(get_args(Dtype)) == set(DTYPE_NAMES) and get_args(Attention) == ATTENTION


def choice_message(option: str, value, choices) -> str:
    """`--ties must be drop or half, got 'x'`: the one wording of a value outside a closed set."""
    shown = ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]
    return f"--{option} must be {shown}, got {value!r}"
# decoders whose transformers implementation (GenericForSequenceClassification, create_causal_mask)
# turns packed position ids into per-text attention; each is checked in tests/test_packing.py
PACKING_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma")


@dataclass(frozen=True)
class Range:
    """The values a numeric option takes: bounds (closed unless *_open), integers only, and
    sentinels allowed outside the bounds (max_steps -1: no limit). None always means "unset"."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    also: tuple = ()
    note: str = ""

    def allows(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if v in self.also:
            return True
        if not math.isfinite(v) or (self.integer and v != int(v)):
            return False
        below = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
        above = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
        return not (below or above)

    @staticmethod
    def _num(x) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"  # 4294967295, not 4.29497e+09

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.lo is not None and self.hi is not None:
            rule = f"{kind} in {'(' if self.lo_open else '['}{self._num(self.lo)}, {self._num(self.hi)}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            rule = f"{kind} {'>' if self.lo_open else '>='} {self._num(self.lo)}"
        elif self.hi is not None:
            rule = f"{kind} {'<' if self.hi_open else '<='} {self._num(self.hi)}"
        else:
            rule = kind
        if self.also:
            rule += ", or " + " or ".join(self._num(a) for a in self.also)
        return rule + (f" ({self.note})" if self.note else "")


_POS, _NONNEG, _SHARE = Range(0, lo_open=True), Range(0), Range(0, 1, hi_open=True)
_SEED = Range(0, 2**32 - 1, integer=True, note="numpy seeds are 32-bit")
# The one table of allowed values of the numeric config fields, the TrainingArguments ones
# included; checked by RewardConfig.__post_init__ (so a YAML file, --key value and Python callers
# all go through it) and by the other commands' options that mean the same thing (check_option).
LIMITS: dict[str, Range] = {
    "learning_rate": _NONNEG, "num_train_epochs": _POS,  # 0: a frozen run (tests check a head's initial value with it)
    "warmup_steps": _NONNEG, "weight_decay": _NONNEG,
    "max_steps": Range(1, integer=True, also=(-1,), note="-1: no limit, --num_train_epochs decides"),
    "per_device_train_batch_size": Range(1, integer=True), "per_device_eval_batch_size": Range(1, integer=True),
    "gradient_accumulation_steps": Range(1, integer=True), "max_length": Range(8, integer=True, note="tokens"),
    "vocab_size": Range(1, integer=True), "max_grad_norm": Range(0, note="0: no clipping"),
    "adam_beta1": _SHARE, "adam_beta2": _SHARE, "adam_epsilon": _POS,
    "logging_steps": _POS, "save_steps": _POS, "eval_steps": _POS, "save_total_limit": Range(0, integer=True),
    "dataloader_num_workers": Range(0, integer=True), "seed": _SEED, "data_seed": _SEED,
    "lora_r": Range(1, integer=True), "lora_alpha": _POS, "lora_dropout": _SHARE,
    "margin_scale": _NONNEG, "tie_weight": _NONNEG, "center_rewards_coefficient": _NONNEG,
    "reward_weights": Range(), "heldout_phrasings": Range(0, integer=True), "principles_per_response": Range(0, integer=True, note="0: all"),
    "principle_thresholds": Range(0, 4, note="the 0-4 rating scale"), "principle_augment": Range(0, 1),
    "nll_weight": _NONNEG, "log_var_min": Range(), "log_var_max": Range(),
    "packing_row_tokens": Range(8, integer=True, note="tokens"),
    "dataset_num_proc": Range(1, integer=True, note="processes"),
}


class OptionError(UsageError):
    """A numeric option outside its Range: `--learning_rate nan: must be a finite number >= 0`."""

    def __init__(self, option: str, value, rule: str, flag: str | None = None):
        self.option, self.value, self.rule = option, value, rule
        super().__init__(f"{flag or '--' + option} {value}: must be {rule}")


def check_option(option: str, value, flag: str | None = None) -> None:
    """Raise OptionError when `value` (a number, a list of numbers, or None = unset) is outside
    LIMITS[option]. `flag`: the option as that command spells it (`--batch-size`)."""
    rng = LIMITS[option]
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is not None and not rng.allows(v):
            raise OptionError(option, value if not isinstance(value, (list, tuple)) else " ".join(map(str, value)), rng.describe(), flag)


def is_pretrained(backbone: str | None, init_from: str | None = None) -> bool:
    """Whether a run fine-tunes a pretrained checkpoint: a backbone that is not a preset name, or
    --init_from a run whose own backbone was one (a run grown from a preset keeps the from-scratch
    recipe, which the two-stage HelpSteer2-Preference runs were measured with)."""
    from .backbones import PRESETS

    if init_from:
        backbone = config_field(init_from, "backbone")
        return backbone is not None and backbone not in PRESETS
    return backbone not in PRESETS


@dataclass
class RewardConfig(TrainingArguments):
    """Fields shared by every objective; TrainingArguments' defaults changed where a small model
    trained from scratch on CPU needs it (learning rate, no checkpoint spam, no external loggers)."""

    objective: str = field(default="bt", metadata={"help": "bt | regression | principle | meanvar."})
    backbone: Optional[str] = field(default=None, metadata={"help": "A preset of rm_training/backbones.py (tiny, tiny-moe, small, small-moe) or a local Hugging Face checkpoint directory. Default: small, or with --init_from the backbone that run was trained from."})
    tokenizer: str = field(default=None, metadata={"help": "A local tokenizer directory; default: the backbone's when it is a checkpoint, else a byte-level BPE trained on the training texts."})
    vocab_size: int = field(default=4096, metadata={"help": "Vocabulary of the BPE trained when no tokenizer is given (tokens)."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Tokens per scored text; longer texts keep their end (the response) and the last turns. Counted, never dropped (unlike TRL, trl#2488). Default: 512, or an encoder's position limit when it reads fewer."})
    ties: Ties = field(default="drop", metadata={"help": "Pairs with strength 0: drop, or half (a 0.5 label)."})
    soft_labels: bool = field(default=False, metadata={"help": "Train on P(A better) from the annotators' votes (needs `helpsteer analyze`)."})
    init_from: str = field(default=None, metadata={"help": "Start from the weights of an earlier run (HelpSteer2-Preference two-stage recipe: a regression run, then --objective bt --bt_variant scaled --init_from RUN). A bt head starts from the run's helpfulness output."})
    torch_dtype: Dtype = field(default="float32", metadata={"help": "How the backbone's weights are stored while training: float32 (fp32 master weights whatever the checkpoint's dtype), bfloat16/float16 (half the memory; updates below their resolution are lost) or auto (the checkpoint's)."})
    attn_implementation: Optional[Attention] = field(default=None, metadata={"help": "Attention kernel: eager, sdpa or flash_attention_2 (needs the flash-attn package and a CUDA GPU). Default: transformers' choice (sdpa), with eager on short CPU batches where it is faster."})
    use_lora: bool = field(default=False, metadata={"help": "LoRA adapters (peft) instead of full fine-tuning; the reward head is always trained in full and saved. The run keeps the adapter (RUN/adapter/) and a merged checkpoint that loads without peft."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (Hu et al. 2021)."})
    lora_alpha: Optional[float] = field(default=None, metadata={"help": "LoRA scaling alpha (update scale alpha / r). Default: 2 x lora_r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: str = field(default="auto", metadata={"help": "Comma-separated module names (q_proj,v_proj ...), all-linear, or auto: all-linear, except on NemotronH (attention, MLP and the Mamba in_proj: peft refuses the Mamba out_proj and conv1d)."})
    disable_dropout: bool = field(default=True, metadata={"help": "Dropout 0 in the backbone and head, as TRL's RewardTrainer: a reward is a difference of two forward passes, which dropout makes noisy. --lora_dropout is kept."})
    packing: bool = field(default=False, metadata={"help": "Padding-free training: a batch's texts packed into rows of --packing_row_tokens with position ids restarting per text (OpenRLHF --packing_samples; trl#3780). Decoders: " + ", ".join(PACKING_MODEL_TYPES) + "; not NemotronH or encoders."})
    packing_row_tokens: Optional[int] = field(default=None, metadata={"help": "Tokens per packed row with --packing (default --max_length): eager/SDPA attention costs rows x width^2, so rows no wider than a padded batch's. Unused under flash_attention_2 (one row per batch)."})
    freeze_backbone: bool = field(default=False, metadata={"help": "Train the reward head alone (a linear probe on the backbone's features)."})
    output_dir: str = field(default=None, metadata={"help": "The run directory (default WS/runs/<name>-<objective>)."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": f"AdamW peak learning rate. Default: {SCRATCH['learning_rate']} for a preset trained from scratch, {FINETUNE['learning_rate']} to fine-tune a pretrained checkpoint (--backbone DIR)."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Pairs (bt) or responses (regression) per step and device. Small models trained from scratch learn per step, so the default is small (bench/RESULTS.md)."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Items per evaluation batch."})
    num_train_epochs: Optional[float] = field(default=None, metadata={"help": f"Epochs over the training examples. Default: {SCRATCH['num_train_epochs']:g} for a preset from scratch (it learns the easy cues first and facts later, bench/RESULTS.md), {FINETUNE['num_train_epochs']:g} to fine-tune a pretrained checkpoint."})
    warmup_steps: Optional[float] = field(default=None, metadata={"help": f"Linear warm-up: steps, or a share of all steps when below 1. Default: {SCRATCH['warmup_steps']} from scratch, {FINETUNE['warmup_steps']} for a pretrained checkpoint."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    logging_steps: float = field(default=10, metadata={"help": "Steps between metric lines in metrics.jsonl."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to write resumable checkpoints (atomically, by transformers.Trainer)."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    train_sampling_strategy: SamplingStrategy = field(default="group_by_length", metadata={"help": "group_by_length (default: batches of similar length, little padding), random, sequential or batch_rebalance (transformers' padded-token balancing across devices)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the reward columns in the dataset."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data loader processes."})
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin host memory for GPU transfers (off: CPU by default)."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, shuffling and dropout."})
    dataset_num_proc: Optional[int] = field(default=None, metadata={"help": "Processes that render and tokenize the examples (datasets .map num_proc) into WS/.cache/tokenized/, reused by later runs with the same inputs. Default: min(4, CPUs), one per 2000 examples at most."})
    metric_for_best_model: Optional[str] = field(default=None, metadata={"help": "The eval metric that picks the best checkpoint with --load_best_model_at_end. Default: eval_accuracy (bt, meanvar, principle; higher is better) or eval_mae (regression; lower is better)."})
    bf16: Optional[bool] = field(default=None, metadata={"help": "bf16 autocast (weights and optimizer stay fp32). Default: on where the hardware multiplies bf16 natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), as TRL does; --bf16 false for fp32."})
    # (named so, not `device`/`dtype`: TrainingArguments has a `device` property; typed --device, --dtype)
    compute_device: str = field(default="auto", metadata={"aliases": ["--device"], "help": "Where to train: auto (CUDA when present; under torchrun each rank its own GPU, LOCAL_RANK), cpu, cuda, or cuda:N (one process). CUDA asked for where there is none is an error, never a silent CPU run."})
    compute_dtype: str = field(default="auto", metadata={"aliases": ["--dtype"], "help": "Compute precision: auto (as --bf16's default), float32, bfloat16 (bf16 autocast over fp32 master weights) or float16 (fp16 mixed precision with loss scaling, CUDA only). How the weights are stored is --torch_dtype."})

    def __post_init__(self):
        import torch

        # a run grown from another (--init_from) keeps its backbone and length unless told otherwise
        if self.backbone is None:
            self.backbone = config_field(self.init_from, "backbone") or "small"
        if self.max_length is None and self.init_from:
            self.max_length = config_field(self.init_from, "max_length")
        # the fields whose default depends on the backbone (None = not set by the user)
        recipe = FINETUNE if is_pretrained(self.backbone, self.init_from) else SCRATCH
        for k, v in recipe.items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.dataset_num_proc is None:
            self.dataset_num_proc = min(4, os.cpu_count() or 1)
        if self.metric_for_best_model is None and self.load_best_model_at_end:
            self.metric_for_best_model = "eval_mae" if self.objective == "regression" else "eval_accuracy"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            # (eval_loss, eval_mae and eval_mae_<attribute> are errors: lower is better)
            self.greater_is_better = self.metric_for_best_model.removeprefix("eval_").split("_")[0] not in ("loss", "mae")
        self.validate()
        if self.disable_tqdm is None:  # progress bars on a terminal only, quiet in pipes and logs
            import sys

            self.disable_tqdm = not sys.stderr.isatty()
        device = self._placement()
        if self.bf16 is None:
            self.bf16 = native_bf16(device) and not self.fp16
        if self.bf16 and not torch.cuda.is_available():
            self.use_cpu = True  # transformers only autocasts on CPU when told it is a CPU run
        # under torchrun on a machine without CUDA, DDP runs over gloo
        if self.ddp_backend is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if not torch.cuda.is_available():
                self.ddp_backend = "gloo"
                self.use_cpu = True  # without it accelerate sets up no process group on CPU
        check_engines(self)  # before transformers reads --deepspeed (it imports deepspeed) or drops --fsdp
        super().__post_init__()
        if self.deepspeed and torch.distributed.is_available() and torch.distributed.is_initialized():
            # a CPU run's process group is set up by accelerate with torch itself (on GPUs through
            # deepspeed): deepspeed's own comm layer must wrap it before zero.Init (a pretrained
            # backbone loaded under ZeRO-3) reads the world size, else it sees 1
            import deepspeed

            deepspeed.comm.init_distributed(dist_backend=torch.distributed.get_backend(), auto_mpi_discovery=False)

    def _placement(self):
        """--device and --dtype onto TrainingArguments' own switches (use_cpu, bf16, fp16), checked
        against them: `--dtype float32 --bf16 true` is a contradiction, not a choice."""
        import torch

        from .devices import dtype_name, resolve_device

        dev = resolve_device(self.compute_device)
        if dev.type == "cpu":
            self.use_cpu = True
        elif dev.index and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            torch.cuda.set_device(dev)  # (accelerate places a single process on the current device)
        prec = dtype_name(str(self.compute_dtype))
        if prec == "float16" and dev.type != "cuda":
            raise UsageError("--dtype float16: fp16 mixed precision needs a CUDA GPU (its loss scaling); use --dtype bfloat16 or float32 on the CPU")
        wanted = {"float32": (False, False), "bfloat16": (True, False), "float16": (False, True)}.get(prec)
        if wanted is None:
            return dev
        for flag, have, want in (("--bf16", self.bf16, wanted[0]), ("--fp16", self.fp16 or None, wanted[1])):
            if have is not None and bool(have) != want:
                raise UsageError(f"--dtype {self.compute_dtype} with {flag} {str(bool(have)).lower()}: they contradict each other; give one of them")
        self.bf16, self.fp16 = wanted
        return dev

    def validate(self) -> None:
        """Every numeric field against LIMITS and every closed-set field against its Literal, before
        transformers or any training sees it."""
        for name in LIMITS:
            if hasattr(self, name):
                check_option(name, getattr(self, name))
        for name, choices in closed_sets(type(self)).items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise UsageError(choice_message(name, value, choices))
        if self.load_best_model_at_end:  # (transformers would raise a ValueError of several lines)
            ev, sv = (str(getattr(x, "value", x)) for x in (self.eval_strategy, self.save_strategy))
            if ev == "no":
                raise UsageError("--load_best_model_at_end needs --eval_strategy steps or epoch: it keeps the best of the evaluated checkpoints")
            if sv not in (ev, "best"):  # ("best": transformers saves only when the metric improves)
                raise UsageError(f"--load_best_model_at_end with --eval_strategy {ev} needs --save_strategy {ev} or best (a checkpoint at every evaluation, "
                                 f"or at every better one), got --save_strategy {sv}")
            every = self.eval_steps or self.logging_steps
            if ev == "steps" and sv == "steps" and self.save_steps % every:
                raise UsageError(f"--load_best_model_at_end needs --save_steps ({self.save_steps:g}) to be a multiple of --eval_steps ({every:g})")
        if hasattr(self, "log_var_min") and self.log_var_min >= self.log_var_max:
            raise OptionError("log_var_min", self.log_var_min, f"below --log_var_max ({self.log_var_max:g})")


def closed_sets(cls) -> dict[str, tuple[str, ...]]:
    """The fields of a config class typed Literal[...] (or Optional[Literal[...]]) and their values."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t = hints.get(f.name)
        args = [a for a in get_args(t) if a is not type(None)] if typing.get_origin(t) is typing.Union else [t]
        if len(args) == 1 and typing.get_origin(args[0]) is Literal:
            out[f.name] = get_args(args[0])
    return out


INSTALL_DEEPSPEED = "pip install 'helpsteer-platform[deepspeed]'"


def check_engines(cfg: RewardConfig) -> None:
    """--fsdp and --deepspeed before any work. accelerate runs FSDP on accelerators only: on a CPU
    it would quietly train plain DDP, so that is refused. DeepSpeed runs on a CPU through its CPU
    accelerator (DS_ACCELERATOR=cpu, set here when torch sees no CUDA device), under a launcher
    that sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (torchrun; one process: --nproc_per_node 1).
    A ZeRO-3 run must gather its shards when it saves, so the run is a full checkpoint."""
    import importlib.util
    import json
    from pathlib import Path

    import torch

    cuda = torch.cuda.is_available() and not cfg.use_cpu  # (with CUDA present, use_cpu is only ever the user's choice)
    fsdp = bool(cfg.fsdp) or cfg.fsdp_config is not None or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if fsdp and cfg.deepspeed:
        raise UsageError("--fsdp and --deepspeed exclude each other: each engine shards the model its own way; choose one")
    if fsdp and not cuda:
        raise UsageError("--fsdp needs CUDA GPUs: accelerate runs FSDP only on accelerators (on a CPU it would train plain DDP); "
                         "on CPUs shard with DeepSpeed instead: torchrun --nproc_per_node N -m helpsteer.cli train ... --deepspeed configs/ds_zero3.json")
    if not cfg.deepspeed:
        return
    if importlib.util.find_spec("deepspeed") is None:
        raise UsageError(f"--deepspeed needs the deepspeed package: {INSTALL_DEEPSPEED}")
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise UsageError(f"--deepspeed runs under a launcher ({', '.join(missing)} not set): "
                         "torchrun --nproc_per_node N -m helpsteer.cli train ... (N=1 for one process)")
    ds = cfg.deepspeed
    if isinstance(ds, str):
        path = Path(ds)
        if not path.is_file():
            raise UsageError(f"--deepspeed {ds}: no such file; give a DeepSpeed JSON config (configs/ds_zero2.json, configs/ds_zero3.json)")
        try:
            ds = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"--deepspeed {path}: not a JSON config ({e})") from None
        if not isinstance(ds, dict):
            raise UsageError(f"--deepspeed {path}: expected a JSON object of DeepSpeed settings, got a {type(ds).__name__}")
    where = f"--deepspeed {cfg.deepspeed}" if isinstance(cfg.deepspeed, str) else "--deepspeed"
    zero = ds.get("zero_optimization") or {}
    if zero.get("stage") == 3:
        if not zero.get("stage3_gather_16bit_weights_on_model_save"):
            raise UsageError(f"{where}: ZeRO-3 needs zero_optimization.stage3_gather_16bit_weights_on_model_save true, so the run is saved "
                             "as one full checkpoint (configs/ds_zero3.json sets it)")
        if cfg.use_lora:
            raise UsageError(f"{where}: --use_lora with ZeRO-3 is not supported (the LoRA merge needs whole weights); "
                             "use ZeRO-2 (configs/ds_zero2.json): the frozen base is not trained, the adapter's optimizer states are sharded")
    if not cuda:
        chosen = os.environ.get("DS_ACCELERATOR")
        if chosen not in (None, "cpu"):
            raise UsageError(f"DS_ACCELERATOR={chosen} but torch sees no CUDA device here; unset it or set DS_ACCELERATOR=cpu")
        # (read by deepspeed at its first get_accelerator() call, which happens after this point)
        os.environ["DS_ACCELERATOR"] = "cpu"


@dataclass
class BTConfig(RewardConfig):
    """Bradley-Terry: -log sigmoid(r_chosen - r_rejected), with the variants of the field."""

    bt_variant: BtVariant = field(default="plain", metadata={"help": "plain; margin: -log sigmoid(d - margin_scale*|strength|) (Llama 2, TRL); scaled: |strength| * -log sigmoid(d) (HelpSteer2-Preference scaled BT)."})
    margin_scale: float = field(default=1.0, metadata={"help": "Margin per unit of preference strength (margin variant)."})
    tie_weight: float = field(default=1.0, metadata={"help": "Weight of a tie in the scaled variant (|strength| = 0 would otherwise contribute nothing)."})
    center_rewards_coefficient: float = field(default=0.0, metadata={"help": "TRL's c * mean((r_c + r_r)^2) to center rewards (0.01 recommended; Eisenstein et al. 2023)."})


@dataclass
class RegressionConfig(RewardConfig):
    """SteerLM / Nemotron-4-340B-Reward: masked MSE over the HelpSteer attributes."""

    objective: str = field(default="regression", metadata={"help": "regression"})
    attributes: list[str] = field(default_factory=lambda: list(HELPSTEER_ATTRIBUTES), metadata={"help": "Output columns, one per rated attribute."})
    standardize_targets: bool = field(default=True, metadata={"help": "Train on per-attribute z-scores, folded back into the head so logits stay on the rating scale: high-variance attributes otherwise crowd out the rest. Needs a one-layer head with bias (not LoRA)."})
    reward_weights: list[float] = field(default_factory=lambda: [NEMOTRON_WEIGHTS[a] for a in HELPSTEER_ATTRIBUTES],
                                        metadata={"help": "Scalar reward = attributes @ weights (default: Nemotron-4-340B-Reward's)."})


@dataclass
class PrincipleConfig(RewardConfig):
    """RLBFF binary-principle model: P(the response satisfies principle P) from a Yes logit,
    trained with binary cross-entropy; the principle is rendered as a last turn after the response."""

    objective: str = field(default="principle", metadata={"help": "principle"})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs over the principle examples; each response yields --principles_per_response of them, so one epoch already visits every response several times."})
    heldout_phrasings: int = field(default=1, metadata={"help": "Phrasings per attribute kept out of training (the last ones of rm_training/principles.py PHRASINGS), evaluated as principle_accuracy_heldout_phrasings."})
    principle_thresholds: list[float] = field(default_factory=lambda: [3.0, 3.0, 3.0, 2.0, 3.0], metadata={"help": "Rating thresholds of helpfulness, correctness, coherence, complexity, verbosity: an attribute principle holds when the label >= threshold (0-4 scale)."})
    principles_per_response: int = field(default=6, metadata={"help": "Rating-derived principles sampled per response, once per run (0 = all phrasings of all attributes)."})
    principle_augment: float = field(default=0.85, metadata={"help": "Share of the rating-derived training principles reworded at random (rm_training/principles.py reword), so the model keys on the attribute words, not the sentence shape (RLBFF, arXiv:2509.21319). 0: fixed phrasings."})
    principles_file: str = field(default=None, metadata={"help": "A JSONL of principle/label rows a user wrote: {response_id | prompt/messages + response, principle, label: Yes/No}."})
    default_principle: str = field(default="The response is helpful.", metadata={"help": "The principle used when a caller gives none (scalar reward, pairwise evaluation)."})


@dataclass
class MeanVarConfig(RewardConfig):
    """Diverging Preferences mean-variance model: reward ~ N(mu, sigma^2), Thurstonian
    P(A > B) = Phi((mu_A - mu_B) / sqrt(sigma_A^2 + sigma_B^2)) against soft labels from the votes."""

    objective: str = field(default="meanvar", metadata={"help": "meanvar"})
    soft_labels: bool = field(default=True, metadata={"help": "Train on P(A better) from the annotators' votes (a tie counts half); from the analysis when it exists, else from the votes directly."})
    ties: Ties = field(default="half", metadata={"help": "Pairs whose aggregate is a tie: half (kept, label from the votes) or drop."})
    nll_weight: float = field(default=0.0, metadata={"help": "Weight of a Gaussian NLL term on the per-annotator helpfulness ratings of each response (needs ratings in the dataset; 0 = off)."})
    log_var_min: float = field(default=-6.0, metadata={"help": "Lower clamp of the predicted log-variance (numerical safety)."})
    log_var_max: float = field(default=6.0, metadata={"help": "Upper clamp of the predicted log-variance."})


CONFIGS = {"bt": BTConfig, "regression": RegressionConfig, "principle": PrincipleConfig, "meanvar": MeanVarConfig}
