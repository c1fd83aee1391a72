"""rm_training: reward models on the hybrid Mamba-Transformer backbone (transformers' NemotronH).

Importing the package registers NemotronHForSequenceClassification with
AutoModelForSequenceClassification, so `from_pretrained(RUN)` works for the platform's runs."""

from transformers import AutoModelForSequenceClassification, NemotronHConfig

from .grpo import reward_function
from .modeling import NemotronHForSequenceClassification

AutoModelForSequenceClassification.register(NemotronHConfig, NemotronHForSequenceClassification, exist_ok=True)

__all__ = ["NemotronHForSequenceClassification", "reward_function"]
