"""Batch scoring with a reward model: texts -> logits (N x outputs) under inference mode, batches
sorted by length (little padding), results returned in input order."""

from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def score_token_ids(model, ids: list[list[int]], pad_id: int, batch_size: int = 32) -> np.ndarray:
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), model.config.num_labels), dtype=np.float64)
    device = next(model.parameters()).device
    for start in range(0, len(ids), batch_size):
        idx = order[start : start + batch_size]
        batch = [ids[i] for i in idx]
        width = max(len(x) for x in batch)
        t = torch.full((len(batch), width), pad_id, dtype=torch.long)
        m = torch.zeros((len(batch), width), dtype=torch.long)
        for j, x in enumerate(batch):
            t[j, : len(x)] = torch.tensor(x)
            m[j, : len(x)] = 1
        logits = model(input_ids=t.to(device), attention_mask=m.to(device)).logits
        out[idx] = logits.float().cpu().numpy()
    return out


def score_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> tuple[np.ndarray, list[bool]]:
    """Logits per text and whether it was truncated (its end kept)."""
    from .data import tokenize

    full = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    truncated = [len(x) > max_length for x in full]
    ids, _ = tokenize(tokenizer, texts, max_length)
    return score_token_ids(model, ids, tokenizer.pad_token_id, batch_size), truncated


def load_run(path):
    """A run's model and tokenizer through the Auto classes (safetensors only)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import rm_training  # noqa: F401  (registers the NemotronH reward head)

    model = AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(str(path))
    model.eval()
    return model, tok
