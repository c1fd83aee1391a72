"""The training recipe behind `helpsteer train`, top to bottom: parse the config, reject bad
combinations early, set up tokenizer -> data -> model, train with RewardTrainer, save a Hugging
Face checkpoint (safetensors) with the run's records (resolved config, metrics.jsonl, model card).

  helpsteer train --workspace WS --name NAME --objective bt --num_train_epochs 2"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from helpsteer import store
from helpsteer.errors import UsageError

from . import runs
from .config import CONFIGS, RewardConfig
from .modeling import HEAD_NAMES
from .runs import safetensors_damage as _safetensors_damage

log = logging.getLogger(__name__)


def parse_config(objective: str, config_file: Path | None, overrides: list[str], output_dir: Path) -> RewardConfig:
    """YAML values first, command-line --key value pairs over them. Every value is checked here
    (types by the argument parser, ranges by the config dataclass, config.LIMITS), and an error
    names the option as typed, the value seen and what is allowed, with the YAML file and line
    when the value came from there."""
    from .config import OptionError

    if objective not in CONFIGS:
        raise UsageError(f"--objective must be one of {', '.join(CONFIGS)}, got {objective!r}")
    cls = CONFIGS[objective]
    parser = _parser(cls)
    args: list[str] = []
    where: dict[str, str] = {}  # option -> "FILE, line N: " for the values that came from the YAML file
    if config_file:
        data, lines = _read_yaml(Path(config_file))
        for k, v in data.items():
            at = f"{config_file}, line {lines.get(k, '?')}: "
            if k in ("objective", "output_dir") or v is None:  # (an empty value: the default)
                continue
            action = parser._option_string_actions.get(f"--{k}") if isinstance(k, str) else None
            if action is None:
                raise UsageError(f"{at}{k} is not a field of {cls.__name__} (rm_training/config.py; `helpsteer train --help` lists them)")
            if isinstance(v, dict) or (isinstance(v, list) and action.nargs not in ("+", "*")):
                raise UsageError(f"{at}{k}: expected a single value, got a {'mapping' if isinstance(v, dict) else 'list'}")
            where[k] = at
            args += [f"--{k}", *(map(str, v) if isinstance(v, list) else [str(v).lower() if isinstance(v, bool) else str(v)])]
    for a in overrides:  # the command line overrides the file
        if a.startswith("--"):
            where.pop(a[2:].split("=", 1)[0], None)
    args += _glue_negatives(list(overrides)) + ["--output_dir", str(output_dir)]
    raw = _raw_values(args)
    try:
        (cfg, rest) = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except _ArgError as e:
        raise UsageError(_arg_message(str(e), where, raw)) from None
    except OptionError as e:
        at = where.get(e.option, "")
        shown = e.value if " " in str(e.value) else raw.get(e.option, e.value)  # (a list field: all its values)
        raise UsageError(f"{at}{e.option if at else '--' + e.option} {shown}: must be {e.rule}") from None
    if rest:
        raise UsageError(f"unknown training options {rest}: they are not fields of {cls.__name__} (rm_training/config.py)")
    cfg.objective = objective
    if objective == "principle" and len(cfg.principle_thresholds) != 5:
        raise UsageError(f"--principle_thresholds needs 5 values (helpfulness, correctness, coherence, complexity, verbosity), got {len(cfg.principle_thresholds)}")
    if objective == "regression" and len(cfg.reward_weights) != len(cfg.attributes):
        raise UsageError(f"--reward_weights has {len(cfg.reward_weights)} values for {len(cfg.attributes)} attributes")
    _check_model_options(cfg)
    return cfg


class _ArgError(Exception):
    """argparse's message for a value it cannot convert (instead of its usage text and SystemExit)."""


def _parser(cls):
    """transformers' HfArgumentParser for `cls`, raising _ArgError instead of printing argparse's
    usage text and exiting."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message):
            raise _ArgError(message)

    return Parser(cls)


def _glue_negatives(args: list[str]) -> list[str]:
    """`--learning_rate -1e-5` as `--learning_rate=-1e-5`: argparse reads a lone "-1e-5" as an
    option name (only plain negatives such as -5 pass as values), so the range check never saw it."""
    out: list[str] = []
    for a in args:
        if out and out[-1].startswith("--") and "=" not in out[-1] and a.startswith("-") and not a.startswith("--"):
            try:
                float(a)
            except ValueError:
                pass
            else:
                out[-1] = f"{out[-1]}={a}"
                continue
        out.append(a)
    return out


def _raw_values(args: list[str]) -> dict[str, str]:
    """The text given for each option (the last one wins, as in argparse): errors show the value
    as the user typed it (1e-5, not 1e-05)."""
    out: dict[str, str] = {}
    for i, a in enumerate(args):
        if a.startswith("--"):
            k, eq, v = a[2:].partition("=")
            vals = [v] if eq else [x for x in args[i + 1:i + 2] if not x.startswith("--")]
            if vals:
                out[k] = vals[0]
    return out


_KINDS = {"int": "an integer", "float": "a number", "string_to_bool": "true or false"}


def _arg_message(msg: str, where: dict[str, str], raw: dict[str, str]) -> str:
    """`argument --seed: invalid int value: 'x'` -> `--seed x: must be an integer` (with the YAML
    file and line when the value came from there)."""
    import re

    m = re.match(r"argument (--[\w-]+)(?:/\S+)?: (.*)", msg)
    if not m:
        return f"bad training option: {msg}; see `helpsteer train --help`"
    flag, detail = m.groups()
    at = where.get(flag[2:], "")
    shown = flag[2:] if at else flag
    c = re.match(r"invalid choice: '(.*)' \(choose from (.*)\)", detail)
    if c:  # a closed-set field: the wording RewardConfig.validate uses too
        from .config import choice_message

        choices = tuple(re.findall(r"'([^']*)'", c.group(2)) or c.group(2).split(", "))  # (3.12+ unquotes them)
        return at + choice_message(flag[2:], c.group(1), choices).removeprefix("--" if at else "")
    t = re.match(r"invalid (\w+) value: '(.*)'", detail)
    if t:
        return f"{at}{shown} {t.group(2)}: must be {_KINDS.get(t.group(1), 'a ' + t.group(1))}"
    return f"{at}{shown}: {detail}"


def _read_yaml(path: Path) -> tuple[dict, dict]:
    """A --config file as a mapping, and the line of each key. Read with yaml.safe_load: tags that
    build Python objects (!!python/...) are refused, as is anything but plain values."""
    import re

    import yaml

    if not path.exists():
        raise UsageError(f"--config {path}: no such file")
    if not path.is_file():
        raise UsageError(f"--config {path}: not a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        tag = re.search(r"tag '([^']*)'", str(e.problem))
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "?"
        raise UsageError(f"{path}, line {line}: tag {shown} is not allowed: config files are read with yaml.safe_load (plain values only)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"{path}{at}: YAML syntax error: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of config fields (key: value lines), got a {type(data).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    return data, lines


DEFAULT_MAX_LENGTH = 512  # tokens per scored text, unless the backbone reads fewer

# model types whose position embeddings are a learned table of max_position_embeddings rows
ABSOLUTE_POSITIONS = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "albert")


def _check_model_options(cfg: RewardConfig) -> None:
    """The backbone, precision, attention and LoRA options, before any data is read."""
    import importlib.util

    from .backbones import PRESETS
    from .config import DTYPES, check_option

    if cfg.init_from:
        src = Path(cfg.init_from)
        missing = [f for f in ("config.json", "model.safetensors") if not (src / f).is_file()]
        if missing:
            raise UsageError(f"--init_from {src}: not a finished run ({'no such directory' if not src.is_dir() else 'no ' + ' or '.join(missing)}); "
                             "give the directory of a run `helpsteer train` wrote")
    for opt in ("tokenizer", "principles_file"):
        if getattr(cfg, opt, None) and not Path(getattr(cfg, opt)).exists():
            raise UsageError(f"--{opt} {getattr(cfg, opt)}: no such {'directory' if opt == 'tokenizer' else 'file'}")
    if cfg.backbone not in PRESETS and not cfg.init_from:
        p = Path(cfg.backbone)
        if not p.is_dir():
            raise UsageError(f"--backbone {cfg.backbone!r} is neither a preset ({', '.join(PRESETS)}) nor a local checkpoint directory")
        if not (p / "config.json").exists():
            raise UsageError(f"--backbone {p}: no config.json there; a Hugging Face checkpoint directory holds config.json and its weights")
        mc = json.loads((p / "config.json").read_text())
        # learned absolute positions (BERT-style encoders) cannot read past their table
        offset = 2 if mc.get("model_type") in ("roberta", "xlm-roberta", "camembert") else 0
        limit = mc.get("max_position_embeddings")
        if cfg.max_length is None and mc.get("model_type") in ABSOLUTE_POSITIONS and limit:
            cfg.max_length = min(DEFAULT_MAX_LENGTH, limit - offset)
        if mc.get("model_type") in ABSOLUTE_POSITIONS and limit and (cfg.max_length or DEFAULT_MAX_LENGTH) > limit - offset:
            raise UsageError(f"--max_length {cfg.max_length} is longer than {p} can read ({mc['model_type']}: {limit - offset} positions); "
                             f"use --max_length {limit - offset} or less")
    if cfg.max_length is None:
        cfg.max_length = DEFAULT_MAX_LENGTH
    check_option("max_length", cfg.max_length)  # (the range of every numeric field: config.LIMITS)
    if DTYPES[cfg.torch_dtype] == "float16" and cfg.fp16:
        raise UsageError("--torch_dtype float16 with --fp16 true: fp16 mixed precision needs fp32 master weights to unscale; keep --torch_dtype float32 or use --bf16")
    if cfg.attn_implementation is not None:
        if cfg.attn_implementation == "flash_attention_2":
            import torch

            if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available() or cfg.use_cpu:
                raise UsageError("--attn_implementation flash_attention_2 needs the flash-attn package and a CUDA GPU (pip install '.[gpu]'); use sdpa or eager")
            if DTYPES[cfg.torch_dtype] == "float32" and not (cfg.bf16 or cfg.fp16):
                raise UsageError("--attn_implementation flash_attention_2 runs in bf16/fp16 only: keep --bf16 on, or --torch_dtype bfloat16")
    if cfg.use_lora:
        if cfg.freeze_backbone:
            raise UsageError("--use_lora and --freeze_backbone exclude each other: LoRA adapts the backbone, --freeze_backbone trains the head alone")
    if cfg.packing:
        _check_packing(cfg)


def _check_packing(cfg: RewardConfig) -> None:
    """--packing needs a decoder whose attention takes the texts' boundaries from position ids
    (config.PACKING_MODEL_TYPES). NemotronH cannot: transformers' PyTorch Mamba2 path (the CPU one,
    and the GPU one without mamba-ssm) has no seq_idx in its causal conv1d or chunked scan, so a
    packed text would start from the previous text's state (tests/test_packing.py shows it)."""
    from .backbones import PRESETS
    from .config import PACKING_MODEL_TYPES

    src = cfg.init_from or (None if cfg.backbone in PRESETS else cfg.backbone)
    what = f"--init_from {src}" if cfg.init_from else f"--backbone {cfg.backbone}"
    model_type = json.loads((Path(src) / "config.json").read_text()).get("model_type") if src else "nemotron_h"
    if model_type == "nemotron_h":
        raise UsageError(f"--packing true: {what} is NemotronH, whose Mamba2 layers cannot be packed: transformers' PyTorch Mamba2 path takes no "
                         "sequence boundaries (no seq_idx in its conv1d and chunked scan), so each text would start from the state of the one "
                         "before it; use --packing false")
    if model_type not in PACKING_MODEL_TYPES:
        raise UsageError(f"--packing true: {what} is {model_type or 'of no known model_type'}; packing needs a decoder whose attention reads text boundaries from "
                         f"position ids ({', '.join(PACKING_MODEL_TYPES)}); use --packing false")
    if cfg.attn_implementation == "flash_attention_2" and cfg.packing_row_tokens:
        raise UsageError(f"--packing_row_tokens {cfg.packing_row_tokens} with --attn_implementation flash_attention_2: transformers' flash-attention "
                         "reads packed texts from a single row, so each batch is packed into one; leave --packing_row_tokens unset")
    rows = cfg.packing_row_tokens or cfg.max_length
    if rows < cfg.max_length:
        raise UsageError(f"--packing_row_tokens {rows} is shorter than --max_length {cfg.max_length}: every text must fit in one row; "
                         f"use --packing_row_tokens {cfg.max_length} or more")


def check_run_dir(run_dir: Path, out: str | None) -> None:
    """Before any work: the run directory is a directory (or can be made) and files can be written
    there. Probes with a temporary file or folder that is removed again, so a refused run leaves
    nothing behind."""
    import tempfile

    flag = f"--out {out}: " if out else ""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == run_dir else f"cannot be made: {existing} is a file"
        raise UsageError(f"{flag}{run_dir} {what}; a run is a directory (a new one, or an unfinished run to resume)")
    try:
        if existing == run_dir:
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=run_dir)
            os.close(fd)
            os.unlink(probe)
        else:
            with tempfile.TemporaryDirectory(prefix=".write-probe-", dir=existing):
                pass
    except OSError as e:
        raise UsageError(f"{run_dir}: not writable ({e.strerror or e}); give --out a writable directory") from None


def _torch_file_damage(path: Path) -> str | None:
    """Why a torch.save file (a zip archive: optimizer.pt, scheduler.pt, rng_state.pth) is cut
    short, None when its directory and every member lie within the file. Reads no tensor data."""
    import zipfile

    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as z:
            for m in z.infolist():
                if m.header_offset + m.compress_size > size:
                    return f"{path.name} is cut short ({m.filename} ends past the file)"
    except (OSError, zipfile.BadZipFile) as e:
        return f"{path.name} is not a complete torch file ({e})"
    return None


def checkpoint_damage(ckpt: Path) -> str | None:
    """Why transformers could not resume from a checkpoint, None when it can: trainer_state.json
    (the last file Trainer writes) must parse, and the weight and optimizer files there must be
    whole (a process killed mid-save, a disk that filled up, a copy cut short)."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        int(state["global_step"])
    except FileNotFoundError:
        return "no trainer_state.json (the save was cut short)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"trainer_state.json does not parse ({type(e).__name__}: {e})"
    try:
        entries = list(ckpt.iterdir())
    except OSError as e:  # (removed meanwhile by another rank under torchrun)
        return f"cannot be listed ({e.strerror or e})"
    files = [f for f in entries if f.is_file()]
    if not any(f.suffix in (".safetensors", ".bin") for f in files) and not any(f.is_dir() for f in entries):
        return "no model weights"
    for f in sorted(files):
        why = _safetensors_damage(f) if f.suffix == ".safetensors" else _torch_file_damage(f) if f.suffix in (".pt", ".pth") else None
        if why:
            return why
    return None


def complete_checkpoint(run_dir: Path, warn=None) -> Path | None:
    """The newest checkpoint transformers can resume from. A damaged one (checkpoint_damage: cut
    short by a killed process, truncated on disk) is reported through `warn` and removed, so
    training resumes from the one before it, or starts over when none is left, and a later save
    of the same step finds no half-written folder in its way."""
    import shutil

    ckpts = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    for p in reversed(ckpts):
        if not p.is_dir():
            continue
        why = checkpoint_damage(p)
        if why is None:
            return p
        if int(os.environ.get("RANK", "0")) == 0:  # (under torchrun every rank skips it, rank 0 reports and removes it)
            if warn is not None:
                warn(f"warning: skipping damaged checkpoint {p}: {why} (removed)")
            shutil.rmtree(p, ignore_errors=True)
    return None


def _texts_for_tokenizer(workspace: Path, name: str) -> list[str]:
    resp = store.load_table(workspace, name, "responses", ["context", "response"])
    texts = resp["response"].to_list()
    for ctx in resp["context"].to_list():
        texts.extend(t["content"] for t in ctx)
    from .principles import PHRASINGS, REWORDING_WORDS

    # principle texts too (and the words of their rewordings), so principle models see whole-word
    # tokens for them: a few times each, as BPE merges only pairs seen at least min_frequency times
    # (once each, "unhelpful" was u-n-he-lp-ful and "concise" shared its first piece with "contains")
    texts.extend([t for ph in PHRASINGS.values() for _, t in ph[:-1]] * 4)
    texts.extend([REWORDING_WORDS] * 4)
    prin = store.load_table(workspace, name, "principles", ["principle"])
    texts.extend(prin["principle"].unique().to_list() if prin.height else [])
    return texts


def save_tokenizer(tokenizer, run_dir: Path) -> None:
    """save_pretrained into a temporary folder, then each file renamed into the run: another rank
    (torchrun) checking for RUN/tokenizer.json never reads half a file."""
    import tempfile

    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-tokenizer-", dir=run_dir, ignore_cleanup_errors=True) as tmp:
        tokenizer.save_pretrained(tmp)
        for f in sorted(Path(tmp).iterdir(), key=lambda p: p.name == runs.TOKENIZER):  # tokenizer.json last: its presence means complete
            os.replace(f, run_dir / f.name)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_tokenizer(cfg: RewardConfig, workspace: Path, name: str, run_dir: Path):
    from .tokenizer import load_tokenizer, train_bpe

    if (run_dir / runs.TOKENIZER).exists():  # resuming: the run's own tokenizer
        return load_tokenizer(run_dir)
    if cfg.init_from:
        return load_tokenizer(cfg.init_from)
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer, dedicated_pad=True)
    if Path(cfg.backbone).is_dir() and any((Path(cfg.backbone) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return load_tokenizer(cfg.backbone, dedicated_pad=True)
    return train_bpe(_texts_for_tokenizer(workspace, name), vocab_size=cfg.vocab_size)


def build_model(cfg: RewardConfig, tokenizer, num_labels: int):
    """The reward model: a preset built from scratch, a run's weights (--init_from), or a local
    checkpoint with a reward head (fresh when the checkpoint has none); then the precision,
    vocabulary, pad id, and LoRA / frozen-backbone set-up."""
    import torch

    from .backbones import PRESETS, build_config
    from .modeling import NemotronHForSequenceClassification

    torch.manual_seed(cfg.seed)
    dtype = _torch_dtype(cfg.torch_dtype)
    fresh: list[str] = []
    if cfg.init_from:
        model = _from_run(cfg, num_labels)
    elif cfg.backbone in PRESETS:
        extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        mc = build_config(cfg.backbone, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=num_labels,
                          score_bias=bool(getattr(cfg, "standardize_targets", False)) and cfg.objective == "regression", **extra)
        model = NemotronHForSequenceClassification(mc)
        fresh = ["score"]
    else:
        model, fresh = _from_checkpoint(cfg, num_labels, dtype)
    if dtype not in (None, "auto") and model.dtype != dtype:
        model.to(dtype)
    # a tokenizer that grew (an added pad token; Qwen2's <|endoftext|>) needs embedding rows first,
    # and only then the pad id (a pad id past the embedding is an index error)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.gradient_checkpointing:
        # non-reentrant: gradients reach LoRA adapters and a frozen backbone's head through the
        # checkpointed blocks even though the embedding outputs need no gradient
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.disable_dropout:  # before peft wraps the model: its LoRA dropout stays
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    head = _head_modules(model, fresh)
    if not isinstance(model, NemotronHForSequenceClassification):
        _fp32_head_output(model)  # (the platform's NemotronH head does this itself)
    if cfg.use_lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r,
                                                 lora_dropout=cfg.lora_dropout, target_modules=lora_targets(model, cfg.lora_target_modules, head),
                                                 modules_to_save=head))
    elif cfg.freeze_backbone:
        for n, p in model.named_parameters():
            p.requires_grad_(_under(n, head))
    return model


def _under(name: str, modules: list[str]) -> bool:
    """Whether a parameter or module name lies in one of `modules` (full dotted names)."""
    return any(name == m or name.startswith(m + ".") for m in modules)


def _fp32_head_output(model) -> None:
    """Recompute the reward head's last linear layer in fp32 outside autocast (a forward hook, so
    nothing changes in the saved model): under bf16 autocast transformers' heads would return bf16
    rewards (8 bits of mantissa), and the BT loss is built on their small differences."""
    import torch
    import torch.nn.functional as F

    last = None
    for name in HEAD_NAMES:
        mod = getattr(model, name, None)
        if isinstance(mod, torch.nn.Linear):
            last = mod
        elif isinstance(mod, torch.nn.Module):
            linears = [m for m in mod.modules() if isinstance(m, torch.nn.Linear)]
            last = linears[-1] if linears else None
        if last is not None:
            break
    if last is None:
        return

    def hook(module, args, output):
        x = args[0]
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(x.float(), module.weight.float(), None if module.bias is None else module.bias.float())

    last.register_forward_hook(hook)


def _linear_head(model):
    """The reward head when it is one linear layer with a bias (the regression z-scoring folds into
    it): NemotronH's `score` (built with a bias for regression), an encoder's `classifier`. None
    under LoRA (peft wraps the head) and for heads without a bias (decoders' `score`)."""
    import torch

    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear) and head.bias is not None:
            return head
    return None


def _torch_dtype(name: str):
    import torch

    from .config import DTYPES

    d = DTYPES[name]
    return "auto" if d == "auto" else getattr(torch, d)


def _from_checkpoint(cfg: RewardConfig, num_labels: int, dtype):
    """A local checkpoint as a sequence classifier: its own head when it has one of the right size,
    else a fresh one (`score` on decoders, `classifier` on BERT-style encoders). Returns the model
    and the top-level modules that were freshly initialised (the head)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    import rm_training  # noqa: F401  (NemotronH checkpoints get the platform's reward head)

    mc = AutoConfig.from_pretrained(cfg.backbone, num_labels=num_labels)
    mc.use_cache = False
    kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(cfg.backbone, config=mc, dtype=dtype, ignore_mismatched_sizes=True,
                                                                         output_loading_info=True, **kwargs)
    except (ValueError, ImportError) as e:  # e.g. an attention implementation the architecture lacks
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"--backbone {cfg.backbone}: transformers could not load it as a sequence classifier: {first}") from None
    missing = set(info.get("missing_keys", [])) | {k for k, *_ in info.get("mismatched_keys", [])}
    fresh = [f for f in _fresh_modules(model, missing) if f.rsplit(".", 1)[-1] in HEAD_PARTS]
    body = sorted(k for k in missing if not _under(k, fresh))
    if body:
        # parameters of the backbone itself that the checkpoint did not provide: training would
        # start from random weights there (a renamed prefix, a layout transformers does not know)
        raise UsageError(f"--backbone {cfg.backbone}: {len(body)} backbone weights are not in the checkpoint (e.g. {', '.join(body[:3])}); "
                         "it does not match its config.json's architecture")
    return model, fresh


def _fresh_modules(model, missing: set[str]) -> list[str]:
    """The outermost modules all of whose parameters were freshly initialised (not in the
    checkpoint): the new head, and parts of it a base checkpoint lacks (BERT's pooler)."""
    out: list[str] = []
    for name, mod in model.named_modules():
        if not name or _under(name, out):
            continue
        params = [f"{name}.{p}" for p, _ in mod.named_parameters()]
        if params and all(p in missing for p in params):
            out.append(name)
    return out


# the reward heads of transformers' *ForSequenceClassification classes, and the parts of them a
# base checkpoint may lack (poolers and prediction heads sit between the encoder and the classifier)
HEAD_PARTS = ("score", "classifier", "pooler", "pre_classifier", "head")


def _head_modules(model, fresh: list[str]) -> list[str]:
    """Modules (full names) that make up the reward head: the freshly initialised ones and the named
    head. They are trained in full under LoRA (and saved with the adapter: losing the head is
    trl#1379 / OpenRLHF#873) and are all that trains with --freeze_backbone."""
    tops = {n for n, _ in model.named_children()}
    return sorted(set(fresh) | {h for h in HEAD_NAMES if h in tops})


# NemotronH: peft refuses the Mamba mixers' out_proj and conv1d; attention, MLP and in_proj are fine
NEMOTRON_H_LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "in_proj"]


def lora_targets(model, spec: str, head: list[str]) -> list[str]:
    """--lora_target_modules as the full names of the linear layers to adapt, the head left out (it
    trains in full): auto (every linear layer; on NemotronH the list above), all-linear, or
    comma-separated layer names (q_proj,v_proj)."""
    import torch

    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not _under(n, head)]
    if spec == "auto" and getattr(model.config, "model_type", "") == "nemotron_h":
        present = {n.rsplit(".", 1)[-1] for n in linear}
        spec = ",".join(x for x in NEMOTRON_H_LORA if x in present)
    if spec in ("auto", "all-linear"):
        return linear
    names = [x.strip() for x in spec.split(",") if x.strip()]
    leaves = {n.rsplit(".", 1)[-1] for n in linear}
    unknown = [x for x in names if x not in leaves]
    in_head = [x for x in unknown if any(n.rsplit(".", 1)[-1] == x for n, _ in model.named_modules() if _under(n, head))]
    if in_head:
        raise UsageError(f"--lora_target_modules: {', '.join(in_head)} is part of the reward head, which trains in full anyway; name backbone layers")
    if unknown:
        raise UsageError(f"--lora_target_modules: {', '.join(unknown)} is no linear layer of this model; it has {', '.join(sorted(leaves))}")
    return [n for n in linear if n.rsplit(".", 1)[-1] in names]


def _from_run(cfg: RewardConfig, num_labels: int):
    """Weights of an earlier run; a new head of num_labels outputs starts from the run's
    `helpfulness` output (or its scalar-reward combination) when the shapes differ."""
    import torch
    from transformers import AutoModelForSequenceClassification

    import rm_training  # noqa: F401

    src = Path(cfg.init_from)
    if not (src / "config.json").exists():
        raise UsageError(f"--init_from {src}: not a run directory (no config.json)")
    kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    model = AutoModelForSequenceClassification.from_pretrained(str(src), use_safetensors=True, **kwargs)
    head_name = next((h for h in HEAD_NAMES if isinstance(getattr(model, h, None), torch.nn.Linear)), None)
    head = getattr(model, head_name) if head_name else None
    if model.config.num_labels == num_labels:
        return model
    if head is None:
        raise UsageError(f"--init_from {src}: its reward head ({type(getattr(model, 'classifier', None)).__name__}) is not one linear layer, so it cannot be "
                         f"reshaped from {model.config.num_labels} to {num_labels} outputs; train this objective from the backbone instead")
    attrs = list(getattr(model.config, "reward_attributes", []))
    with torch.no_grad():
        w = head.weight
        pick = torch.tensor(model.config.reward_weights, dtype=w.dtype)
        if "helpfulness" in attrs:
            pick = torch.nn.functional.one_hot(torch.tensor(attrs.index("helpfulness")), w.shape[0]).to(w.dtype)
        new = torch.nn.Linear(w.shape[1], num_labels, bias=head.bias is not None and head_name != "score")
        if new.bias is not None:
            new.bias.zero_()
        # a bt head (1 output) starts as the helpfulness output (else the scalar-reward combination);
        # a meanvar head's mean does, its log-variance starts at 0
        if num_labels == 1 or cfg.objective == "meanvar":
            new.weight.zero_()
            new.weight[0].copy_(pick @ w)
            if new.bias is not None:
                new.bias[0] = pick @ head.bias
    setattr(model, head_name, new)
    model.config.score_bias = False  # a pairwise reward needs no offset
    model.config.num_labels = num_labels
    model.num_labels = num_labels
    return model


def run_training(workspace: Path, name: str, objective: str, out: str | None = None, config_file: Path | None = None,
                 overrides: list[str] | None = None, extra_pairs: list[tuple[list[dict], str, str]] | None = None) -> Path:
    """The recipe: parse and check the config, set up tokenizer -> data -> model and trainer, train,
    save. extra_pairs: (context, chosen response, rejected response) added to a pairwise objective's
    training pairs with label 1 (adversarial training: good response vs its successful attack)."""
    from .data import choose_split

    _quiet_bars_in_pipes()
    # config, checked before any work
    workspace = Path(workspace)
    manifest = store.read_manifest(workspace, name)
    run_dir = runs.run_path(workspace, name, objective, out)
    cfg = parse_config(objective, config_file, overrides or [], run_dir)
    split = choose_split(workspace, name, "train")
    eval_split = _eval_split(cfg, workspace, name)
    check_run_dir(run_dir, out)
    run_dir.mkdir(parents=True, exist_ok=True)

    # tokenizer -> data -> model and trainer
    tokenizer = build_tokenizer(cfg, workspace, name, run_dir)  # deterministic: every rank gets the same one
    if _main_process():
        save_tokenizer(tokenizer, run_dir)
    data = _setup_data(cfg, workspace, name, objective, tokenizer, run_dir, split, eval_split, extra_pairs)
    log.info(f"{objective}: {data.n_examples} training examples from {name!r} (split {split or 'all'}), "
             f"{data.truncated} texts truncated to {cfg.max_length} tokens")
    trainer, stats = _setup_trainer(cfg, objective, tokenizer, data, run_dir)

    # train (resuming from the newest whole checkpoint of an unfinished run)
    resume = complete_checkpoint(run_dir, warn=log.warning) if not runs.finished(run_dir) else None
    if resume:
        log.info(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # save
    rewards = _final_rewards(trainer, cfg, stats, data, tokenizer)
    state = full_state_dict(trainer)  # (every rank takes part in gathering sharded weights)
    if trainer.is_world_process_zero():
        _save_run(trainer, tokenizer, cfg, run_dir, SavedRun(objective, data.attributes, data.weights, rewards, manifest, name,
                                                             data.n_examples, data.truncated, split, state))
        log.info(f"run written to {run_dir}")
    _end_distributed(trainer)
    return run_dir


def _quiet_bars_in_pipes() -> None:
    import sys

    import datasets
    import transformers

    if not sys.stderr.isatty():  # transformers' loading/saving bars too stay quiet in pipes
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes files


@dataclass
class TrainingData:
    """What the objective trains on, and the reward columns its model will output."""

    train_dataset: object
    eval_dataset: object | None
    n_examples: int
    truncated: int
    num_labels: int
    collator: object
    attributes: list[str]
    weights: list[float]


def _setup_data(cfg: RewardConfig, workspace: Path, name: str, objective: str, tokenizer, run_dir: Path, split, eval_split,
                extra_pairs) -> TrainingData:
    """The training (and eval) datasets of the objective, its collator and its reward columns."""
    from .data import cache_dir, examples
    from .trainer import LabelCollator, PackedCollator, PairCollator, RatedCollator

    if objective == "principle":
        train_dataset, eval_dataset, truncated = _principle_data(cfg, workspace, name, tokenizer, split, eval_split)
        n_examples = len(train_dataset)
    else:  # rendered and tokenized on disk (data.tokenized), memory-mapped
        cache = cache_dir(workspace, run_dir)
        ex = examples(workspace, name, tokenizer, split, cfg, cache, extra_pairs=extra_pairs)
        log.info(f"{'reused' if ex.reused else 'wrote'} tokenized examples {ex.path}")
        train_dataset, n_examples, truncated = ex.dataset, len(ex.dataset), ex.truncated
        eval_dataset = examples(workspace, name, tokenizer, eval_split, cfg, cache).dataset if eval_split else None
    if objective in ("bt", "meanvar"):
        num_labels, collator = 1, PairCollator(tokenizer.pad_token_id)
        attributes, weights = ["reward"], [1.0]
        if objective == "meanvar":
            num_labels, attributes, weights = 2, ["mean", "log_var"], [1.0, 0.0]
    elif objective == "principle":
        num_labels, collator = 1, LabelCollator(tokenizer.pad_token_id)
        attributes, weights = ["yes"], [1.0]
    else:
        num_labels, collator = len(cfg.attributes), RatedCollator(tokenizer.pad_token_id)
        attributes, weights = list(cfg.attributes), list(cfg.reward_weights)
    if cfg.packing:  # padding-free batches (checked against the backbone in _check_packing)
        collator = PackedCollator(collator, None if cfg.attn_implementation == "flash_attention_2" else cfg.packing_row_tokens or cfg.max_length)
    return TrainingData(train_dataset, eval_dataset, n_examples, truncated, num_labels, collator, attributes, weights)


def _principle_data(cfg: RewardConfig, workspace: Path, name: str, tokenizer, split, eval_split):
    """(train dataset, eval dataset or None, texts truncated) of principle rows: (principle, response) -> yes/no."""
    import datasets

    from helpsteer.schema import HELPSTEER_ATTRIBUTES

    from .data import tokenize
    from .principles import load_principled

    def principled(split_, purpose):
        # (in memory: load_principled renders its texts as it samples the principles)
        pr = load_principled(workspace, name, tokenizer, split_, purpose=purpose, heldout_phrasings=cfg.heldout_phrasings,
                             thresholds=dict(zip(HELPSTEER_ATTRIBUTES, cfg.principle_thresholds)), per_response=cfg.principles_per_response,
                             principles_file=cfg.principles_file, seed=cfg.seed, augment=cfg.principle_augment)
        if not len(pr):
            raise UsageError(f"dataset {name!r} has no principle data in split {split_ or 'all'}: it needs principle rows (helpsteer3-principle), "
                             "feedback texts, attribute ratings, or --principles_file")
        ids, cut = tokenize(tokenizer, pr.text, cfg.max_length)
        return datasets.Dataset.from_dict({"input_ids": ids, "label": pr.label, "length": [len(x) for x in ids]}), cut

    train_dataset, truncated = principled(split, "train")
    eval_dataset = principled(eval_split, "eval")[0] if eval_split else None
    return train_dataset, eval_dataset, truncated


def _setup_trainer(cfg: RewardConfig, objective: str, tokenizer, data: TrainingData, run_dir: Path):
    """The model and its RewardTrainer, and for a standardized regression the targets' (mean, std)
    the head is trained on (None otherwise)."""
    import torch

    from .trainer import MetricsFile, RewardTrainer

    model = build_model(cfg, tokenizer, data.num_labels)
    if cfg.use_cpu or not torch.cuda.is_available():
        from .modeling import short_ssd_chunks

        short_ssd_chunks(model)
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=data.train_dataset, eval_dataset=data.eval_dataset, data_collator=data.collator,
                            callbacks=[MetricsFile(runs.metrics_path(run_dir))], reward_args=cfg)
    if trainer.args.world_size > 1 or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        # every rank says where it stands: rank and world size as the launcher set them, the engine
        log.info(f"rank {trainer.args.process_index} of {trainer.args.world_size}: {engine_name(trainer)}")
    stats = None
    if objective == "regression" and getattr(cfg, "standardize_targets", False) and _linear_head(model) is not None:
        t = np.array(data.train_dataset["targets"][:], dtype=float)
        stats = (np.nanmean(t, axis=0), np.maximum(np.nanstd(t, axis=0), 1e-3))
        trainer.target_stats = tuple(torch.tensor(x, dtype=torch.float32) for x in stats)
    return trainer, stats


def _final_rewards(trainer, cfg: RewardConfig, stats, data: TrainingData, tokenizer) -> np.ndarray:
    """Fold a standardized regression's z-scoring into the head, then the final model's rewards on
    training texts (for the reward normalisation statistics)."""
    import torch

    if stats is not None:
        # fold the z-scoring into the head: logits = std * (W h + b) + mean, on the rating scale
        head = _linear_head(trainer.model)
        with torch.no_grad(), _gathered(head.parameters()):
            std_t, mean_t = (torch.tensor(x, dtype=head.weight.dtype) for x in (stats[1], stats[0]))
            head.weight.mul_(std_t[:, None])
            head.bias.mul_(std_t).add_(mean_t)
    # reward normalisation statistics: the final model's outputs on the last (up to 512) texts it
    # was trained on, recorded during training; by then the learning rate has decayed to almost
    # nothing, so they are the final weights' rewards to a close approximation, without a scoring
    # pass that would cost a tenth of a short run
    # (with --load_best_model_at_end the weights may be an earlier checkpoint's: scored too)
    logits = np.array(trainer.recent_logits if not cfg.load_best_model_at_end else [], dtype=np.float64)
    if len(logits) < 64:  # (a resumed run with nothing left to train) score a sample instead
        from .scoring import score_token_ids

        train_dataset = data.train_dataset
        cols = ["chosen_ids", "rejected_ids"] if "chosen_ids" in train_dataset.column_names else ["input_ids"]
        n = len(train_dataset)
        pick = np.random.default_rng(cfg.seed).choice(len(cols) * n, min(512, len(cols) * n), replace=False)  # rows of the chosen, then the rejected texts
        texts_ids = [train_dataset[int(i % n)][cols[i // n]] for i in sorted(pick)]
        logits = score_token_ids(trainer.model, texts_ids, tokenizer.pad_token_id, batch_size=cfg.per_device_eval_batch_size)
    elif stats is not None:  # recorded on the z-score scale of the targets
        logits = logits * stats[1] + stats[0]
    return logits @ np.array(data.weights)


def engine_name(trainer) -> str:
    """The engine the Trainer's accelerator set up: DeepSpeed ZeRO-N, FSDP, DDP over a backend."""
    acc = trainer.accelerator
    if trainer.is_deepspeed_enabled:
        return f"DeepSpeed ZeRO-{acc.state.deepspeed_plugin.zero_stage} ({acc.device.type})"
    if trainer.is_fsdp_enabled:
        return f"FSDP{acc.state.fsdp_plugin.fsdp_version} ({acc.device.type})"
    if trainer.args.world_size > 1:
        import torch.distributed as dist

        return f"DDP over {dist.get_backend() if dist.is_initialized() else trainer.args.ddp_backend} ({acc.device.type})"
    return f"one process ({acc.device.type})"


def _gathered(params):
    """Under DeepSpeed ZeRO-3, a context in which `params` are whole on every rank (entered by all
    ranks; what rank 0 writes to them is kept); elsewhere nothing to do."""
    import contextlib

    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(params), modifier_rank=0)


def full_state_dict(trainer) -> dict | None:
    """The final weights whole, on rank 0, where the engine shards them (DeepSpeed ZeRO-3: accelerate
    gathers them layer by layer, as Trainer.save_model does; FSDP: a full state dict; every rank
    must call this); None where the model holds its own weights whole (one process, DDP, ZeRO-1/2).
    (The FSDP branch is accelerate's own path, untested here: FSDP runs on GPUs only.)"""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if trainer.is_fsdp_enabled:
        return trainer.accelerator.get_state_dict(trainer.model)
    if not (trainer.is_deepspeed_enabled and is_deepspeed_zero3_enabled()):
        return None
    return trainer.accelerator.get_state_dict(trainer.deepspeed)


def _eval_split(cfg: RewardConfig, workspace: Path, name: str) -> str | None:
    """The split evaluated during training (--eval_strategy steps|epoch): validation, else test."""
    from .data import choose_split

    if str(getattr(cfg.eval_strategy, "value", cfg.eval_strategy)) == "no":
        return None
    split = choose_split(workspace, name, "eval")
    if split is None:
        raise UsageError(f"--eval_strategy {getattr(cfg.eval_strategy, 'value', cfg.eval_strategy)} evaluates on the validation (or test) split, and dataset {name!r} has neither; "
                         f"run `helpsteer split --workspace {workspace} --name {name}`")
    return split


def _end_distributed(trainer) -> None:
    """Under torchrun, wait until rank 0 has written the run, then release the DDP wrapper (its
    reducer holds the process group) and shut the process group down while every rank is still
    connected. A rank that exits with gloo's threads running aborts ("terminate called without an
    active exception"); one whose DDP reducer is freed after the group was destroyed and its peer
    has gone can block for ever joining gloo's threads (seen under load)."""
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    trainer.accelerator.wait_for_everyone()
    trainer.model_wrapped = trainer.model
    trainer.accelerator.free_memory()  # drops the accelerator's references to the wrapped model
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


@dataclass
class SavedRun:
    """What a finished run writes beside its weights: the reward columns (config.json) and the
    records of how it was trained (run_config.json, the model card)."""

    objective: str
    attributes: list[str]  # names of the output columns
    weights: list[float]  # scalar reward = logits @ weights
    rewards: np.ndarray  # the final model's rewards on training texts: the normalisation statistics
    manifest: dict  # the dataset's manifest (its sources' paths, sha256s and record counts)
    dataset: str
    n_examples: int
    truncated: int
    split: str | None
    state_dict: dict | None = None  # the whole weights when the engine shards the model's own (full_state_dict)


def _save_run(trainer, tokenizer, cfg: RewardConfig, run_dir: Path, saved: SavedRun) -> None:
    """The final model as the run's checkpoint (merged when LoRA), its tokenizer and records."""
    objective, attributes, weights, rewards = saved.objective, saved.attributes, saved.weights, saved.rewards
    final = trainer.model
    if cfg.use_lora:
        # the adapter (with the fully trained head in it) for peft users, then the merged weights
        # that load without peft as the run's checkpoint
        final.save_pretrained(run_dir / "adapter", safe_serialization=True)
        final = final.merge_and_unload()
    final.config.objective = objective
    final.config.reward_attributes = attributes
    final.config.reward_weights = weights
    final.config.reward_mean = float(rewards.mean())
    final.config.reward_std = float(rewards.std())
    _for_other_trainers(final, run_dir)
    final.config.reward_max_length = cfg.max_length  # "max_length" is a generation parameter name
    if objective == "principle":
        final.config.default_principle = cfg.default_principle
    final.config.id2label = {i: a for i, a in enumerate(attributes)}
    final.config.label2id = {a: i for i, a in enumerate(attributes)}
    final.save_pretrained(run_dir, safe_serialization=True, state_dict=saved.state_dict)
    save_tokenizer(tokenizer, run_dir)
    _write_records(run_dir, cfg, saved.manifest, saved.dataset, saved.n_examples, saved.truncated, saved.split)


REMOTE_MODELING = "modeling_helpsteer_reward"  # the NemotronH reward head shipped in each NemotronH run


def _for_other_trainers(model, run_dir: Path) -> None:
    """What other trainers read from a run without importing this package: `mean`/`std`, the reward
    normalisation as OpenRLHF's reward models carry it; and for NemotronH (no sequence-classification
    class in transformers) the head's code beside the weights with an `auto_map`, so
    `AutoModelForSequenceClassification.from_pretrained(RUN, trust_remote_code=True)` (TRL's GRPO
    `reward_funcs=[RUN]`) loads it."""
    import shutil

    from . import modeling

    model.config.mean = model.config.reward_mean
    model.config.std = model.config.reward_std
    if model.config.model_type == "nemotron_h":  # (the config, not the class: an engine may have wrapped the model)
        shutil.copyfile(modeling.__file__, run_dir / f"{REMOTE_MODELING}.py")
        model.config.auto_map = {"AutoModelForSequenceClassification": f"{REMOTE_MODELING}.NemotronHForSequenceClassification"}


def _write_records(run_dir: Path, cfg: RewardConfig, manifest: dict, name: str, n_examples: int, truncated: int, split) -> None:
    import torch
    import transformers

    import helpsteer

    from .backbones import PRESETS

    resolved = {k: v for k, v in asdict(cfg).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    info = {
        "dataset": name, "split": split, "n_examples": n_examples, "truncated": truncated,
        "data": [{"path": s["path"], "sha256": s["sha256"], "records": s["records"]} for s in manifest["sources"]],
        "versions": {"helpsteer": helpsteer.__version__, "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
        "seed": cfg.seed, "commit": _git_commit(), "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    runs.write_run_config(run_dir, resolved, info)
    lines = [
        f"# Reward model: {name} ({cfg.objective})", "",
        f"Trained by `helpsteer train --objective {cfg.objective}` on dataset `{name}` (split: {split or 'all'}), {n_examples} examples, {truncated} texts truncated to {cfg.max_length} tokens.",
        "", f"- backbone: `{cfg.backbone}`" + ("" if cfg.backbone in PRESETS else " (a pretrained checkpoint, fine-tuned)"),
        f"- precision: weights {cfg.torch_dtype}, bf16 autocast {'on' if cfg.bf16 else 'off'}",
        *([f"- LoRA: r {cfg.lora_r}, alpha {cfg.lora_alpha or 2 * cfg.lora_r}, dropout {cfg.lora_dropout}, targets {cfg.lora_target_modules}; "
           "the adapter (with the head) is in `adapter/`, the merged weights are this checkpoint"] if cfg.use_lora else []),
        *(["- backbone frozen: only the reward head was trained"] if cfg.freeze_backbone else []),
        f"- seed: {cfg.seed}", f"- commit: {info['commit'] or 'unknown'}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), "", "## Data", "",
        *[f"- `{d['path']}` sha256 `{d['sha256']}` ({d['records']} records)" for d in info["data"]], "", "## Use", "",
        "```python", "import rm_training  # registers the NemotronH reward head", "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        f"model = AutoModelForSequenceClassification.from_pretrained({str(run_dir)!r})", f"tok = AutoTokenizer.from_pretrained({str(run_dir)!r})",
        "text = tok.apply_chat_template(messages + [{'role': 'assistant', 'content': response}], tokenize=False)",
        "enc = tok([text], add_special_tokens=False, padding=True, truncation=True, max_length=model.config.reward_max_length, return_tensors='pt')",
        "reward = model(**enc).logits @ torch.tensor(model.config.reward_weights)", "```", "",
        *(["Without this package: the NemotronH reward head's code ships beside the weights "
           f"(`{REMOTE_MODELING}.py`, named in `config.json`'s `auto_map`), so "
           f"`AutoModelForSequenceClassification.from_pretrained({str(run_dir)!r}, trust_remote_code=True)` loads it, "
           "e.g. as a TRL GRPOTrainer `reward_funcs` entry (with `model_init_kwargs={'trust_remote_code': True}`).", ""]
          if (run_dir / f"{REMOTE_MODELING}.py").exists() else []),
        "Trainers: `config.json` carries `mean` and `std` (the reward normalisation OpenRLHF reads); `helpsteer serve` speaks "
        "OpenRLHF's `/get_reward`, vLLM's `/classify` and SGLang's `/v1/embeddings` (verl) and NeMo Gym's `/verify`.", "",
    ]
    (run_dir / runs.MODEL_CARD).write_text("\n".join(lines))
