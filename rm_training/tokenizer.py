"""Tokenizers for runs: a byte-level BPE trained with `tokenizers` on the training texts when no
pretrained tokenizer is given, with a pad token, right padding, left truncation (keeps the end of
the response and the last turns of the context) and a chat template that renders a conversation
into exactly the text the model scores, special tokens included."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|principle|>"]

# role tag, newline, content, end-of-turn; the scored text ends with the response's </s>
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}"
    "{% if not loop.last %}\n{% endif %}{% endfor %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2):
    """A byte-level BPE PreTrainedTokenizerFast trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=SPECIALS[4:], padding_side="right", truncation_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path):
    """A pretrained tokenizer, set up as the platform scores: pad token, right padding, left
    truncation, and a chat template when it has none."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    tok.truncation_side = "left"
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    return tok


def render(tokenizer, context: list[dict], response: str, principle: str | None = None) -> str:
    """The exact text the model scores for a response in its conversation. A principle model (RLBFF)
    reads the principle as a last `principle` turn after the response, so left truncation (which
    keeps the end) never cuts it; a pretrained chat template that rejects unknown roles gets it as
    a user turn "Principle: ..."."""
    conv = [{"role": t["role"], "content": t["content"]} for t in context] + [{"role": "assistant", "content": response}]
    if principle is None:
        return tokenizer.apply_chat_template(conv, tokenize=False)
    try:
        return tokenizer.apply_chat_template(conv + [{"role": "principle", "content": principle}], tokenize=False)
    except Exception:  # noqa: BLE001  (jinja templates raise their own exception types)
        return tokenizer.apply_chat_template(conv + [{"role": "user", "content": f"Principle: {principle}"}], tokenize=False)
