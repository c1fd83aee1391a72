"""Tokenizers for runs: a byte-level BPE trained with `tokenizers` on the training texts when no
pretrained tokenizer is given, with a pad token, right padding, left truncation (keeps the end of
the response and the last turns of the context) and a chat template that renders a conversation
into exactly the text the model scores, special tokens included."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|principle|>"]

# role tag, newline, content, end-of-turn; the scored text ends with the response's </s>. A
# pretrained tokenizer without a template gets it too: an encoder's (BERT-style, no bos/eos) text
# opens with its [CLS], which its classification head pools, and each turn ends with [SEP].
CHAT_TEMPLATE = (
    "{{ bos_token or cls_token or '' }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{{ eos_token or sep_token or '' }}{% if not loop.last %}\n{% endif %}{% endfor %}"
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


def load_tokenizer(path: str | Path, dedicated_pad: bool = False):
    """A pretrained tokenizer, set up as the platform scores: pad token, right padding, left
    truncation (all three saved in tokenizer_config.json, so a plain AutoTokenizer reload scores
    the same), and a chat template when it has none.

    dedicated_pad (a checkpoint's tokenizer, before training): a tokenizer without a pad token, or
    a decoder's whose pad is its eos, gets a new `<pad>` token. transformers' decoder reward heads
    read the last token that is not the pad id, so with pad == eos a text ending in eos is read one
    token early (transformers#35352). The caller resizes the embedding (train.build_model)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    if dedicated_pad and (tok.pad_token is None or _pad_in_scored_text(tok)):
        tok.add_special_tokens({"pad_token": "<pad>"})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    set_sides(tok)
    return tok


def _pad_in_scored_text(tok) -> bool:
    """Whether the pad token occurs in a rendered conversation: pad = eos, or pad = the template's
    end-of-turn token (Llama-3 fine-tunes pad with <|eot_id|>). The decoder heads would then read
    the reward before the real last token."""
    probe = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi."}]
    try:
        ids = tok(tok.apply_chat_template(probe, tokenize=False), add_special_tokens=False)["input_ids"]
    except Exception:  # noqa: BLE001  (a template that cannot render the probe: judge by eos alone)
        return tok.eos_token is not None and tok.pad_token_id == tok.eos_token_id
    return tok.pad_token_id in ids or (tok.eos_token is not None and tok.pad_token_id == tok.eos_token_id)


def set_sides(tok) -> None:
    """Right padding and left truncation, on the object and in what save_pretrained writes:
    tokenizer_config.json records only init_kwargs, so sides set as attributes after loading
    would reload as transformers' defaults (right truncation) and a plain reload would cut the
    response off a long text instead of its start."""
    tok.padding_side, tok.truncation_side = "right", "left"
    tok.init_kwargs.update(padding_side="right", truncation_side="left")


def render(tokenizer, context: list[dict], response: str, principle: str | None = None) -> str:
    """The exact text the model scores for a response in its conversation. A principle model (RLBFF)
    reads the principle as a last `principle` turn after the response, so left truncation (which
    keeps the end) never cuts it; a pretrained chat template that rejects unknown roles gets it as
    a user turn "Principle: ..."."""
    conv = [{"role": t["role"], "content": t["content"]} for t in context] + [{"role": "assistant", "content": response}]
    if principle is None:
        return tokenizer.apply_chat_template(conv, tokenize=False)
    try:
        text = tokenizer.apply_chat_template(conv + [{"role": "principle", "content": principle}], tokenize=False)
    except Exception:  # noqa: BLE001  (jinja templates raise their own exception types)
        text = ""
    if principle in text:  # (ChatML templates drop a role they do not know without a word)
        return text
    text = tokenizer.apply_chat_template(conv + [{"role": "user", "content": f"Principle: {principle}"}], tokenize=False)
    if principle not in text:
        raise ValueError(f"the chat template renders neither a 'principle' nor a 'user' turn after the response, so a principle model cannot read {principle!r}")
    return text
