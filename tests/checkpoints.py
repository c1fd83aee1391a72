"""Tiny pretrained-style checkpoints of several architectures, written by the tests themselves (no
hub): a base or causal-LM model with random weights plus a tokenizer, saved as a user would find
them in a local directory. Variants: an added pad token (tokenizer larger than the embedding), bf16
weights, a checkpoint's own chat template, BERT-style encoders without bos/eos."""

from __future__ import annotations

from pathlib import Path

WORDS = ("the capital of france is paris and the answer is four because two plus two makes four while "
         "london is in england rome in italy a cat sat on the mat helpful correct wrong verbose concise reply").split()

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}")


def _bpe(specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def _wordpiece():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainers.WordPieceTrainer(vocab_size=300, show_progress=False,
                                                                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    return tok


def decoder_tokenizer(bos="<s>", eos="</s>", pad=None, template=None):
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in (bos, eos, "<unk>") if t] + (["<|im_start|>", "<|im_end|>"] if template else [])
    fast = PreTrainedTokenizerFast(tokenizer_object=_bpe(specials), bos_token=bos, eos_token=eos, unk_token="<unk>")
    if pad:
        fast.pad_token = pad
    if template:
        fast.chat_template = template
    return fast


def encoder_tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=_wordpiece(), cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", mask_token="[MASK]")


def build(kind: str, out: Path) -> Path:
    """Write checkpoint `kind` to `out`: llama (no pad token), qwen2-added-pad (the tokenizer gains
    <|endoftext|> as pad after the model was sized: one token more than the embedding),
    gemma-bf16 (weights saved in bfloat16), llama-chatml (its own ChatML template), nemotron-h
    (a causal LM of transformers' NemotronH), bert, deberta-v2, modernbert, roberta."""
    import torch
    import transformers as tf

    out = Path(out)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256)
    if kind in ("bert", "deberta-v2", "modernbert", "roberta"):
        tok = encoder_tokenizer()
        v = len(tok)
        if kind == "bert":
            model = tf.BertModel(tf.BertConfig(vocab_size=v, pad_token_id=tok.pad_token_id, **small))
        elif kind == "roberta":
            model = tf.RobertaModel(tf.RobertaConfig(vocab_size=v, pad_token_id=tok.pad_token_id, **small))
        elif kind == "deberta-v2":
            model = tf.DebertaV2Model(tf.DebertaV2Config(vocab_size=v, pad_token_id=tok.pad_token_id, relative_attention=True, position_buckets=32,
                                                         pos_att_type=["p2c", "c2p"], **small))
        else:
            model = tf.ModernBertModel(tf.ModernBertConfig(vocab_size=v, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                                                           eos_token_id=tok.sep_token_id, cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
                                                           global_attn_every_n_layers=1, local_attention=16, **small))
    else:
        template = CHATML if kind == "llama-chatml" else None
        tok = decoder_tokenizer(bos="<bos>" if kind.startswith("gemma") else "<s>", eos="<eos>" if kind.startswith("gemma") else "</s>", template=template)
        v = len(tok)
        dec = dict(small, num_key_value_heads=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        if kind in ("llama", "llama-chatml"):
            model = tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=v, **dec))
        elif kind == "qwen2-added-pad":
            model = tf.Qwen2ForCausalLM(tf.Qwen2Config(vocab_size=v, **dec))
            tok.add_special_tokens({"pad_token": "<|endoftext|>"})  # len(tok) == vocab + 1
        elif kind == "gemma-bf16":
            model = tf.GemmaForCausalLM(tf.GemmaConfig(vocab_size=v, head_dim=8, **dec)).to(torch.bfloat16)
        elif kind == "nemotron-h":
            from rm_training.backbones import build_config

            model = tf.NemotronHForCausalLM(build_config("tiny", vocab_size=v, pad_token_id=0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
        else:
            raise ValueError(f"unknown checkpoint kind {kind!r}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
