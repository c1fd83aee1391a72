"""TRL's RewardTrainer with its defaults on a given backbone directory and a conversational pairs
file (`helpsteer export --format dpo`): the anchor side of bench/trl_compare.py, run as its own
process so it is timed as a user runs it. Prints one JSON line: pairs trained on, wall seconds."""

import argparse
import json
import time

t0 = time.perf_counter()
ap = argparse.ArgumentParser()
ap.add_argument("--backbone", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--epochs", type=float, default=1)
ap.add_argument("--batch-size", type=int, default=16)
ap.add_argument("--max-length", type=int, default=512)
ap.add_argument("--learning-rate", type=float, default=None)
a = ap.parse_args()

import datasets  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402
from trl import RewardConfig, RewardTrainer  # noqa: E402

import rm_training  # noqa: E402,F401  (registers the NemotronH reward head)

rows = [json.loads(x) for x in open(a.data)]
ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
model = AutoModelForSequenceClassification.from_pretrained(a.backbone, num_labels=1)  # a base checkpoint defaults to 2 labels
tok = AutoTokenizer.from_pretrained(a.backbone)
# TRL's defaults (bf16 autocast, gradient checkpointing, pad to the longest pair, no length grouping,
# drop pairs over max_length); use_cpu is required on a machine without a GPU
extra = {"learning_rate": a.learning_rate} if a.learning_rate else {}
args = RewardConfig(output_dir=a.out + "-ckpt", per_device_train_batch_size=a.batch_size, num_train_epochs=a.epochs, max_length=a.max_length,
                    use_cpu=True, report_to="none", save_strategy="no", logging_steps=10, **extra)
trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
n = trainer.train_dataset.num_rows
trainer.train()
trainer.save_model(a.out)
tok.save_pretrained(a.out)
print(json.dumps({"pairs": n, "given": len(rows), "wall_s": time.perf_counter() - t0}))
