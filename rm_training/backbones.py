"""Named backbone presets: transformers' NemotronHConfig hybrids (Mamba2 + attention + MLP/MoE
layers, as in Nemotron-H and Nemotron 3), from `tiny` (tests, seconds) to `small` (demo, minutes
on 2 cores) to the paper-shaped `nemotron-h-8b`, which is only ever built on the meta device here
(parameter counts and FLOPs). Any local Hugging Face checkpoint directory can be a backbone instead.

  python -c "from rm_training.backbones import describe; print(describe('small'))" """

from __future__ import annotations

from dataclasses import dataclass

# layer pattern letters: M = Mamba2 mixer, A = attention, F = MLP (feed-forward), E = MoE
_KIND = {"M": "mamba", "A": "attention", "F": "mlp", "E": "moe"}


@dataclass(frozen=True)
class Preset:
    pattern: str
    hidden: int
    heads: int  # attention query heads
    kv_heads: int  # key/value heads (grouped-query attention when fewer than heads)
    head_dim: int
    ffn: int  # MLP intermediate width
    ssm_state: int  # Mamba2 state size per head (d_state)
    mamba_heads: int
    mamba_head_dim: int
    groups: int  # Mamba2 B/C groups (n_groups)
    chunk: int = 64  # Mamba2 chunked-scan length, tokens
    experts: int = 0  # MoE experts in E layers (0: no MoE)
    experts_per_tok: int = 2
    expert_ffn: int = 0
    max_len: int = 2048
    cpu: bool = True  # CPU presets: no CUDA kernels, nothing fetched at start-up


PRESETS: dict[str, Preset] = {
    # tests: ~0.2M parameters, a forward pass in milliseconds
    "tiny": Preset("MAFMF", hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, ssm_state=16, mamba_heads=4, mamba_head_dim=32, groups=1, chunk=32, max_len=512),
    # tests of the MoE path (Nemotron 3 style: Mamba2 + attention + MoE)
    "tiny-moe": Preset("MAEME", hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, ssm_state=16, mamba_heads=4, mamba_head_dim=32, groups=1, chunk=32,
                       experts=4, experts_per_tok=2, expert_ffn=64, max_len=512),
    # demo / benchmarks: ~2.8M parameters (4 Mamba2, 1 attention, 3 MLP layers, hidden 256)
    "small": Preset("MFMAFMFM", hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, ssm_state=32, mamba_heads=8, mamba_head_dim=64, groups=1, chunk=64, max_len=1024),
    "small-moe": Preset("MEMAEMEM", hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, ssm_state=32, mamba_heads=8, mamba_head_dim=64, groups=1, chunk=64,
                        experts=8, experts_per_tok=2, expert_ffn=256, max_len=1024),
    # Nemotron-H 8B shape (52 layers: 24 Mamba2, 4 attention, 24 MLP); meta device only on CPU
    "nemotron-h-8b": Preset("".join("MF" + ("A" if i % 6 == 5 else "") for i in range(24)), hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=21504, ssm_state=128,
                            mamba_heads=128, mamba_head_dim=64, groups=8, chunk=128, max_len=8192, cpu=False),
}


def build_config(preset: str, vocab_size: int, pad_token_id: int = 0, bos_token_id: int = 1, eos_token_id: int = 2, **overrides):
    """A NemotronHConfig for a preset and a vocabulary."""
    from transformers import NemotronHConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown backbone preset {preset!r}; choose one of {', '.join(PRESETS)} or give a local checkpoint directory")
    p = PRESETS[preset]
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=p.hidden, layers_block_type=[_KIND[c] for c in p.pattern],
        num_attention_heads=p.heads, num_key_value_heads=p.kv_heads, head_dim=p.head_dim, intermediate_size=p.ffn,
        ssm_state_size=p.ssm_state, mamba_num_heads=p.mamba_heads, mamba_head_dim=p.mamba_head_dim, n_groups=p.groups, chunk_size=p.chunk,
        max_position_embeddings=p.max_len, pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, use_cache=False,
        tie_word_embeddings=False,
    )
    if p.experts:
        kwargs.update(n_routed_experts=p.experts, num_experts_per_tok=p.experts_per_tok, moe_intermediate_size=p.expert_ffn,
                      moe_shared_expert_intermediate_size=p.expert_ffn, n_shared_experts=1)
    kwargs.update(overrides)
    return NemotronHConfig(**kwargs)


def param_count(config) -> int:
    """Parameters of the backbone + a scalar head, counted on the meta device (no memory)."""
    import torch

    from .modeling import NemotronHForSequenceClassification

    with torch.device("meta"):
        model = NemotronHForSequenceClassification(config)
    return sum(p.numel() for p in model.parameters())


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 3x forward): 6 * active matmul parameters
    plus attention's 12 * layers * hidden * seq_len (Kaplan et al. 2020 / PaLM appendix)."""
    n = param_count(config) - config.vocab_size * config.hidden_size  # embeddings do no matmul
    if getattr(config, "n_routed_experts", 0) and "moe" in config.layers_block_type:
        per_expert = 3 * config.hidden_size * config.moe_intermediate_size
        inactive = (config.n_routed_experts - config.num_experts_per_tok) * per_expert * config.layers_block_type.count("moe")
        n -= inactive
    n_attn = sum(k in ("attention", "full_attention") for k in config.layers_block_type)
    return 6.0 * n + 12.0 * n_attn * config.num_attention_heads * config.head_dim * seq_len


def describe(preset: str, vocab_size: int = 32000, seq_len: int = 512) -> str:
    cfg = build_config(preset, vocab_size)
    return f"{preset}: {param_count(cfg) / 1e6:.2f}M parameters, {flops_per_token(cfg, seq_len) / 1e9:.3f} GFLOP/token (train, seq {seq_len}), layers {PRESETS[preset].pattern}"
