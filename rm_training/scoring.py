"""Scoring with a reward model: token ids -> logits (N x outputs) under inference mode, in length-
bucketed batches (sorted by length, capped by a batch size and a token budget, so little padding),
results in input order; and `Scorer`, a run loaded once that turns conversations into rewards,
attribute values, uncertainties and P(A better) the same way for `helpsteer score`, the API and eval."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import runs
from .data import truncate_left
from .modeling import short_ssd_chunks


def length_buckets(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Indices grouped into batches of similar length: sorted by length, at most `batch_size` rows
    and (when given) at most `max_tokens` padded tokens (rows x longest row) per batch."""
    order = np.argsort(lengths, kind="stable")
    out, cur, width = [], [], 0
    for i in order:
        w = max(width, lengths[i], 1)
        if cur and (len(cur) >= batch_size or (max_tokens and (len(cur) + 1) * w > max_tokens)):
            out.append(np.array(cur))
            cur, w = [], max(lengths[i], 1)
        cur.append(i)
        width = w
    if cur:
        out.append(np.array(cur))
    return out


@torch.inference_mode()
def score_token_ids(model, ids: list[list[int]], pad_id: int, batch_size: int = 32, max_tokens: int | None = None) -> np.ndarray:
    import contextlib

    model.eval()
    device = next(model.parameters()).device
    # kernels that launch on the current CUDA device (Triton's, mamba-ssm's) follow the model's GPU,
    # also from a serving replica's thread, where the current device is cuda:0 by default
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        return _score_buckets(model, ids, pad_id, batch_size, max_tokens, device)


def _score_buckets(model, ids: list[list[int]], pad_id: int, batch_size: int, max_tokens: int | None, device) -> np.ndarray:
    out = np.zeros((len(ids), model.config.num_labels), dtype=np.float64)
    for idx in length_buckets([len(x) for x in ids], batch_size, max_tokens):
        t, m = pad_right([ids[i] for i in idx], pad_id, min_width=1)
        logits = model(input_ids=t.to(device), attention_mask=m.to(device)).logits
        out[idx] = logits.float().cpu().numpy()
    return out


def pad_right(seqs: list[list[int]], pad_id: int, min_width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists right-padded with pad_id to the longest (at least min_width), and their
    attention mask (1 = a real token): the training collators' and scoring's one padding."""
    from torch.nn.utils.rnn import pad_sequence

    rows = [torch.tensor(x, dtype=torch.long) for x in seqs]
    ids = pad_sequence(rows, batch_first=True, padding_value=pad_id)
    mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True, padding_value=0)
    if ids.shape[1] < min_width:  # (a batch of empty texts still gets one padded position)
        ids = torch.nn.functional.pad(ids, (0, min_width - ids.shape[1]), value=pad_id)
        mask = torch.nn.functional.pad(mask, (0, min_width - mask.shape[1]), value=0)
    return ids, mask


def sigmoid(x):
    """The logistic function of logits (clipped to +-60, as it always was here): BT's P(A better),
    a principle model's P(satisfied), /classify's activation."""
    from scipy.special import expit

    return expit(np.clip(np.asarray(x, dtype=np.float64), -60, 60))


def sigma(log_var):
    """A mean-variance model's standard deviation sqrt(exp(log_var)), log_var clipped to +-30."""
    return np.exp(0.5 * np.clip(log_var, -30, 30))


# Tokenizing a text in full to keep its last max_length tokens cost a 3.9 MB request 6.9 s and
# 0.9 GB, so only its tail is tokenized: a slice of CHARS_PER_TOKEN characters per token wanted,
# widened x4 until it gives max_length + MARGIN tokens (a text that fits is always tokenized
# whole). The slice starts where a word ends (BPE, WordPiece and SentencePiece pre-tokenizers all
# split there), so the cut can change only the slice's first tokens, which the MARGIN leaves out.
CHARS_PER_TOKEN = 8
MARGIN = 64
_WORD_END = re.compile(r"\S(?=\s)")


def _tail(text: str, width: int) -> str:
    """The last `width` characters or a little more, starting at whitespace that follows a word;
    the whole text when it is not much longer."""
    cut = len(text) - width
    if cut <= width // 4:
        return text
    ends = [m.end() for m in _WORD_END.finditer(text, max(cut - width, 0), cut)]
    return text[ends[-1]:] if ends else text[cut:]


def tokenize_tail(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], list[bool]]:
    """The last `max_length` token ids of each text and whether it was cut: what tokenizing the
    whole text and `truncate_left` give (the reference in tests/test_scoring.py), with memory and
    time bounded by max_length instead of the text's length. A slice that does not start at whitespace (no word end within
    `width` characters, e.g. CJK or a run of symbols) is checked against one twice as long and the
    whole text is tokenized when the two disagree."""
    out: list[list[int] | None] = [None] * len(texts)
    cut = [False] * len(texts)
    width = {i: CHARS_PER_TOKEN * (max_length + MARGIN) for i in range(len(texts))}
    todo = list(range(len(texts)))
    while todo:
        slices = [_tail(texts[i], width[i]) for i in todo]
        enc = tokenizer(slices, add_special_tokens=False, truncation=False)["input_ids"]
        later = []
        for i, sl, ids in zip(todo, slices, enc):
            if len(sl) == len(texts[i]):
                out[i], cut[i] = ids[-max_length:], len(ids) > max_length
            elif len(ids) < max_length + MARGIN:
                width[i] *= 4  # denser than CHARS_PER_TOKEN: widen
                later.append(i)
            elif sl[0].isspace() or ids[-max_length:] == _recheck(tokenizer, texts[i], 2 * len(sl), max_length):
                out[i], cut[i] = ids[-max_length:], True
            else:
                out[i], cut[i] = truncate_left(tokenizer([texts[i]], add_special_tokens=False, truncation=False)["input_ids"], max_length)[0][0], True
        todo = later
    return out, cut


def _recheck(tokenizer, text: str, width: int, max_length: int) -> list[int]:
    return tokenizer([text[-width:]], add_special_tokens=False, truncation=False)["input_ids"][0][-max_length:]


def score_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> tuple[np.ndarray, list[bool]]:
    """Logits per text and whether it was truncated (its end kept)."""
    ids, truncated = tokenize_tail(tokenizer, texts, max_length)
    return score_token_ids(model, ids, tokenizer.pad_token_id, batch_size), truncated


def load_run(path, device=None, dtype=None):
    """A run's model and tokenizer through the Auto classes (safetensors only, never pickle), on
    `device` in `dtype` (torch objects or names; None: CPU, the checkpoint's fp32). In a half
    precision the reward head still computes in fp32 (see _head_in_fp32)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import rm_training  # noqa: F401  (registers the NemotronH reward head)

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True, dtype=dtype or torch.float32)
    if device:
        model.to(device)
    if model.dtype != torch.float32:
        _head_in_fp32(model)
    tok = AutoTokenizer.from_pretrained(str(path))
    model.eval()
    return model, tok


def _head_in_fp32(model) -> None:
    """Keep the reward head's last linear layer in fp32 and feed it fp32 inputs: a bf16 head would
    round rewards to 8 bits of mantissa, and rewards are compared by their small differences."""
    import torch

    from .modeling import HEAD_NAMES

    head = next((getattr(model, n) for n in HEAD_NAMES if isinstance(getattr(model, n, None), torch.nn.Module)), None)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)] if head is not None else []
    if not linears:
        return
    last = linears[-1]
    last.float()
    last.register_forward_pre_hook(lambda module, args: (args[0].float(), *args[1:]))


@dataclass
class Item:
    """One response in its conversation; `principle` only for principle models."""

    context: list[dict]
    response: str
    principle: str | None = None


class Scorer:
    """A run loaded once. `encode` turns items into token ids (left-truncated as in training, the
    truncation flagged); `logits` runs the model in length buckets; `results` reads the outputs
    as the run's objective defines them (config `objective`, `reward_attributes`, `reward_weights`)."""

    def __init__(self, run: str | Path, device=None, batch_size: int = 32, max_tokens: int | None = 0,
                 max_length: int | None = None, dtype=None):
        from .tokenizer import CHAT_TEMPLATE

        self.run = Path(run)
        if not runs.is_run(self.run):
            raise FileNotFoundError(runs.not_a_run(self.run))
        self.model, self.tokenizer = load_run(self.run, device, dtype)
        if not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = CHAT_TEMPLATE
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        cfg = self.model.config
        self.objective = getattr(cfg, "objective", None) or "bt"
        n = cfg.num_labels
        self.attributes = list(getattr(cfg, "reward_attributes", None) or (["reward"] if n == 1 else [f"output_{i}" for i in range(n)]))
        self.weights = np.array(getattr(cfg, "reward_weights", None) or [1.0] + [0.0] * (n - 1), dtype=np.float64)
        self.max_length = int(max_length or getattr(cfg, "reward_max_length", None) or 512)
        self.batch_size = batch_size
        on_cpu = next(self.model.parameters()).device.type == "cpu"
        # padded tokens per forward: on CPU the Mamba2 reference scan's intermediates outgrow the
        # caches beyond ~1k tokens (measured: 1024 gives the most sequences/s on the small preset)
        self.max_tokens = (1024 if on_cpu else 65536) if max_tokens == 0 else max_tokens
        if on_cpu:
            short_ssd_chunks(self.model)
        self.default_principle = getattr(cfg, "default_principle", None)

    @property
    def name(self) -> str:
        return self.run.name

    def info(self) -> dict:
        cfg = self.model.config
        return {"id": self.name, "path": str(self.run), "objective": self.objective, "attributes": self.attributes,
                "weights": self.weights.tolist(), "backbone": cfg.model_type, "architectures": list(cfg.architectures or []),
                "max_length": self.max_length, "num_parameters": int(sum(p.numel() for p in self.model.parameters()))}

    def text(self, item: Item) -> str:
        from .tokenizer import render

        principle = item.principle if item.principle is not None else (self.default_principle if self.objective == "principle" else None)
        return render(self.tokenizer, item.context, item.response, principle=principle)

    def encode_texts(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        if not texts:
            return [], []
        return tokenize_tail(self.tokenizer, texts, self.max_length)

    def encode(self, items: list[Item]) -> tuple[list[list[int]], list[bool]]:
        return self.encode_texts([self.text(it) for it in items])

    def logits(self, ids: list[list[int]]) -> np.ndarray:
        if not ids:
            return np.zeros((0, self.model.config.num_labels))
        return score_token_ids(self.model, ids, self.tokenizer.pad_token_id, self.batch_size, self.max_tokens)

    def rewards(self, logits: np.ndarray) -> np.ndarray:
        return logits @ self.weights

    def item_rewards(self, items: list[Item]) -> np.ndarray:
        """The scalar reward of each item (encode, logits, logits @ weights)."""
        return self.rewards(self.logits(self.encode(items)[0]))

    def results(self, logits: np.ndarray, truncated: list[bool]) -> list[dict]:
        """Per row: reward (logits @ weights), attributes (regression models), uncertainty (the
        standard deviation sqrt(exp(log_var)) of mean-var models) and, for principle models, the
        probability that the principle is satisfied."""
        out = []
        for row, tr in zip(logits, truncated):
            r = {"reward": float(row @ self.weights), "attributes": None, "uncertainty": None, "truncated": bool(tr)}
            if self.objective == "regression":
                r["attributes"] = {a: float(v) for a, v in zip(self.attributes, row)}
            elif self.objective == "meanvar":
                r["uncertainty"] = float(sigma(row[1]))
            elif self.objective == "principle":
                r["probability"] = float(sigmoid(row[0]))
            out.append(r)
        return out

    def score(self, items: list[Item]) -> list[dict]:
        ids, truncated = self.encode(items)
        return self.results(self.logits(ids), truncated)

    def score_texts(self, texts: list[str], shards=None, progress: bool = False, chunk: int = 512) -> tuple[np.ndarray, list[bool]]:
        """Logits and truncation flags of rendered texts, in input order. Under torchrun (`shards`, a
        devices.Shards) each rank tokenizes and scores every world-th text and all ranks get the
        whole result. Chunks in length order keep each chunk's batches tight and a progress bar moving."""
        from tqdm import tqdm

        from .devices import Shards

        shards = shards or Shards()
        mine = shards.mine(len(texts))
        ids, truncated = self.encode_texts([texts[i] for i in mine])
        local = np.zeros((len(ids), self.model.config.num_labels))
        with tqdm(total=len(texts), unit="seq", desc="scoring", disable=not progress or not shards.main) as bar:
            order = np.argsort([len(x) for x in ids], kind="stable")
            for s in range(0, len(ids), chunk):
                idx = order[s : s + chunk]
                local[idx] = self.logits([ids[i] for i in idx])
                bar.update(len(idx) * shards.size)
        rows = shards.gather(len(texts), mine, [(row, cut) for row, cut in zip(local, truncated)])
        if not rows:
            return np.zeros((0, self.model.config.num_labels)), []
        return np.array([r[0] for r in rows], dtype=np.float64), [bool(r[1]) for r in rows]

    def reward_stats(self) -> tuple[float, float]:
        """The run's reward normalisation statistics (mean, std of its training rewards); (0, 1)
        for a checkpoint written without them."""
        cfg = self.model.config
        mean = getattr(cfg, "reward_mean", None)
        std = getattr(cfg, "reward_std", None)
        return float(mean if mean is not None else 0.0), float(std if std else 1.0)

    def unit_scores(self, logits: np.ndarray) -> np.ndarray:
        """Rewards as probabilities in [0, 1], each read off the objective's own model: bt, the
        Bradley-Terry P(this response beats one whose reward is the training mean) = sigmoid(r -
        mean); meanvar, the Thurstonian P(it beats a response at the training mean with the same
        uncertainty) = Phi((mu - mean) / (sigma sqrt 2)); principle, P(the principle is satisfied);
        regression (a rating scale, not a preference logit), the reward's percentile among the
        training rewards under a normal approximation, Phi((r - mean) / std)."""
        from scipy.stats import norm

        r = self.rewards(logits)
        mean, std = self.reward_stats()
        if self.objective == "meanvar":
            return norm.cdf((r - mean) / (sigma(logits[:, 1]) * np.sqrt(2)))
        if self.objective == "regression":
            return norm.cdf((r - mean) / std)
        if self.objective == "principle":
            return sigmoid(logits[:, 0])
        return sigmoid(r - mean)

    def components(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Per output, what a trainer can log beside the reward: each attribute of a regression
        model, the uncertainty (sigma) of a mean-variance model, the probability of a principle model."""
        if self.objective == "regression":
            return {a: logits[:, k] for k, a in enumerate(self.attributes)}
        if self.objective == "meanvar":
            return {"uncertainty": sigma(logits[:, 1])}
        if self.objective == "principle":
            return {"probability": self.unit_scores(logits)}
        return {}

    def pair_scale(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """sqrt(sigma_A^2 + sigma_B^2) from the logits of the two responses for mean-variance models
        (P(A better) = Phi((mu_A - mu_B) / it)); None for models without uncertainties."""
        if self.objective == "meanvar":
            return np.sqrt(sigma(a[:, 1]) ** 2 + sigma(b[:, 1]) ** 2)
        return None

    def prefer_a(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """P(A better) from the logits of the two responses (see p_a_better)."""
        if self.objective == "meanvar":
            return p_a_better(a[:, 0], b[:, 0], sigma(a[:, 1]), sigma(b[:, 1]))
        return p_a_better(self.rewards(a), self.rewards(b))


def p_a_better(reward_a, reward_b, sigma_a=None, sigma_b=None) -> np.ndarray:
    """P(A better): Thurstonian Phi((mu_A - mu_B) / sqrt(sigma_A^2 + sigma_B^2)) when the model
    gives uncertainties (mean-variance models, Diverging Preferences), else the Bradley-Terry
    sigmoid of r_A - r_B. The API's /v1/compare, `helpsteer score`, eval and the dashboard all use this."""
    d = np.asarray(reward_a, dtype=np.float64) - np.asarray(reward_b, dtype=np.float64)
    if sigma_a is not None and sigma_b is not None:
        from scipy.stats import norm

        return norm.cdf(d / np.sqrt(np.asarray(sigma_a, dtype=np.float64) ** 2 + np.asarray(sigma_b, dtype=np.float64) ** 2))
    return sigmoid(d)
