"""A sequence-classification (reward) head for transformers' NemotronH, which has none.

The reward is read at the last real token: with right padding (the platform's tokenizers) that is
position sum(mask) - 1; left padding is handled too (the last position whose mask is 1). The head
is named `score`, as in transformers' other *ForSequenceClassification classes, and the class is
registered with AutoModelForSequenceClassification on `import rm_training`."""

from __future__ import annotations

import torch
from torch import nn
from transformers import NemotronHConfig
from transformers.modeling_outputs import SequenceClassifierOutputWithPast
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHModel, NemotronHPreTrainedModel

# where transformers' sequence classifiers keep their reward head: `score` on decoders (and this
# NemotronH head), `classifier` on BERT-style encoders
HEAD_NAMES = ("score", "classifier")


def last_token_index(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row (any padding side)."""
    if attention_mask is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, dtype=torch.long, device=input_ids.device)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, -1).max(dim=1).values.clamp(min=0)


def short_ssd_chunks(model, chunk: int = 32) -> None:
    """Run the Mamba2 mixers' chunked SSD scan with chunks of at most `chunk` tokens (in place, for
    this process; the saved config keeps its value). The chunked scan is exact for any chunk
    length, and the reference PyTorch path (CPU, no mamba_ssm kernels) pads every sequence to a
    multiple of it, so on short texts short chunks waste less: measured on the small preset, a
    training step on 32 x 80 tokens takes 20% less time with 32-token chunks than with 64."""
    for m in model.modules():
        if hasattr(m, "chunk_size") and hasattr(m, "ssm_state_size") and isinstance(m.chunk_size, int) and m.chunk_size > chunk:
            m.chunk_size = chunk


class NemotronHForSequenceClassification(NemotronHPreTrainedModel):
    def __init__(self, config: NemotronHConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = NemotronHModel(config)
        # a bias only where asked (regression heads fold per-attribute target means into it)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=bool(getattr(config, "score_bias", False)))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, **kwargs) -> SequenceClassifierOutputWithPast:
        # the mixer needs no mask for right padding (causal: pads come after the read position);
        # passing it keeps left padding correct as well
        out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        hidden = out.last_hidden_state
        ref = input_ids if input_ids is not None else hidden[..., 0]
        idx = last_token_index(attention_mask, ref)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
        # the head runs outside autocast: under bf16 training the rewards (and the losses built on
        # their differences) keep full precision
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            logits = self.score(pooled.to(self.score.weight.dtype))
        return SequenceClassifierOutputWithPast(logits=logits)
