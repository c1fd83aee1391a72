"""rm_training.scoring's bounded tokenization: `tokenize_tail` gives exactly the ids and truncation
flags of tokenizing the whole text and keeping its last max_length tokens (the reference), for
texts under and over the limit, in several tokenizer families and text shapes, while the tokenizer
only ever sees a slice whose length is bounded by max_length, not by the text."""

from __future__ import annotations

import numpy as np
import pytest
from checkpoints import WORDS, decoder_tokenizer, encoder_tokenizer

from rm_training.data import truncate_left
from rm_training.scoring import CHARS_PER_TOKEN, MARGIN, tokenize_tail
from rm_training.tokenizer import render, train_bpe


def _unigram():
    """A SentencePiece-style tokenizer (Unigram over Metaspace), as Llama-2/T5-family checkpoints ship."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator([" ".join(WORDS)] * 20 + ["12345 67890 , . ! ?"] * 5,
                            trainers.UnigramTrainer(vocab_size=120, special_tokens=["<unk>"], unk_token="<unk>", show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


@pytest.fixture(scope="module")
def tokenizers():
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, 30)) + " 1234 5678, x!\n\n" + "这是一个测试。" for _ in range(300)]
    return {"platform-bpe": train_bpe(corpus, vocab_size=600, min_frequency=1), "decoder-bpe": decoder_tokenizer(),
            "wordpiece": encoder_tokenizer(), "unigram": _unigram()}


def _texts(tok) -> list[str]:
    rng = np.random.default_rng(1)

    def words(n):
        return " ".join(rng.choice(WORDS, n))

    chat = render(tok, [{"role": "user", "content": words(40)}], words(3000)) if getattr(tok, "chat_template", None) else words(3000)
    return [
        "", "paris", words(5), words(60), words(200),  # under every limit below or around it
        words(40_000),  # ~250 kB of words
        chat,  # special tokens of the chat template
        ("word!\n\n" * 10_000) + words(10),  # punctuation runs glued to newlines
        "  \t " * 5_000 + words(3),  # a long whitespace run before the tail
        " ".join(str(x) for x in rng.integers(0, 10**9, 10_000)),  # digit groups
        "这是一个测试。" * 5_000,  # CJK: no whitespace at all
        "a" * 30_001, "a" * 30_002,  # one giant "word": BPE merges depend on where it starts
        "x" + "=" * 20_000 + " end",  # a symbol run, then a short tail
        "é😀 " * 10_000,  # multi-byte characters and emoji
    ]


@pytest.mark.parametrize("family", ["platform-bpe", "decoder-bpe", "wordpiece", "unigram"])
@pytest.mark.parametrize("max_length", [1, 16, 64, 256])
def test_tail_ids_equal_tokenizing_everything_then_truncating(tokenizers, family, max_length):
    tok = tokenizers[family]
    texts = _texts(tok)
    want_ids, want_cut = truncate_left(tok(texts, add_special_tokens=False, truncation=False)["input_ids"], max_length)
    got_ids, got_cut = tokenize_tail(tok, texts, max_length)
    for i, (g, w) in enumerate(zip(got_ids, want_ids)):
        assert g == w, (family, max_length, i, texts[i][:40])
    assert got_cut == want_cut
    assert not want_cut[0] and want_cut[5]  # both sides of the limit are covered


class Recording:
    """The real tokenizer, recording the length of every string it is asked to tokenize."""

    def __init__(self, tok):
        self.tok, self.lengths = tok, []

    def __call__(self, texts, **kw):
        self.lengths += [len(t) for t in texts]
        return self.tok(texts, **kw)


def test_a_megabyte_text_is_tokenized_through_a_bounded_slice(tokenizers):
    tok = tokenizers["platform-bpe"]
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(WORDS, 200_000)), "这是一个测试。" * 150_000, "paris"]
    rec = Recording(tok)
    ids, cut = tokenize_tail(rec, texts, 256)
    assert [len(x) for x in ids] == [256, 256, 1] and cut == [True, True, False]
    assert len(texts[0]) > 1_000_000 and len(texts[1]) > 1_000_000
    # the widest string tokenized: the slice reaches back at most one more width to a word's end,
    # and a slice with none (CJK) is checked against one twice as long
    assert max(rec.lengths) <= 4 * CHARS_PER_TOKEN * (256 + MARGIN) < len(texts[0]) // 100
    assert ids == truncate_left(tok(texts, add_special_tokens=False)["input_ids"], 256)[0]



def test_pad_right_sigmoid_and_p_a_better_by_hand():
    from rm_training.scoring import p_a_better, pad_right, sigmoid

    ids, mask = pad_right([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]  # right side, as the tokenizer pads
    ids, mask = pad_right([[], []], pad_id=3, min_width=1)
    assert ids.tolist() == [[3], [3]] and mask.tolist() == [[0], [0]]
    # sigmoid clips its argument to +-60: the far tail stays at sigmoid(-60), not 0
    assert sigmoid(np.array([0.0, 2.0, -100.0])).tolist() == pytest.approx([0.5, 1 / (1 + np.exp(-2)), 1 / (1 + np.exp(60))], rel=1e-12)
    assert p_a_better([1.0], [0.0])[0] == pytest.approx(1 / (1 + np.exp(-1)))
    from scipy.stats import norm

    assert p_a_better([1.0], [0.0], [1.0], [2.0])[0] == pytest.approx(norm.cdf(1 / np.sqrt(5)))
