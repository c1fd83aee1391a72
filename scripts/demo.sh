#!/usr/bin/env bash
# `make demo`: the whole pipeline that exists so far, on the built-in synthetic data.
set -euo pipefail
WS=${1:-workspace/demo}
HS=.venv/bin/helpsteer
DATA=$WS/synthetic
rm -rf "$WS"
mkdir -p "$WS"

echo "== 1. synthetic HelpSteer-style data (planted annotators, truth file) -> $DATA"
$HS synth --out "$DATA" --prompts 600 --seed 0

echo "== 2. ingest every layout into the canonical store"
$HS ingest "$DATA/helpsteer2/train.jsonl.gz" "$DATA/helpsteer2/validation.jsonl.gz" --workspace "$WS" --name hs2
$HS ingest "$DATA/helpsteer2/disagreements/disagreements.jsonl.gz" --workspace "$WS" --name hs2-disagreements
$HS ingest "$DATA/helpsteer2/preference/preference.jsonl.gz" --workspace "$WS" --name hs2-preference
$HS ingest "$DATA/helpsteer3/preference" --workspace "$WS" --name hs3-preference
$HS ingest "$DATA/label_studio/ratings_export.json" --workspace "$WS" --name ratings-ls

echo "== 3. train/validation split by prompt (the disagreements file ships without splits)"
$HS split --workspace "$WS" --name hs2-disagreements --eval-fraction 0.2 --seed 0
$HS split --workspace "$WS" --name ratings-ls --eval-fraction 0.2 --seed 0

echo "== 4. export preference pairs for TRL / DPO / datasets"
$HS export --workspace "$WS" --name hs2-preference --format trl --out "$WS/exports/hs2-preference.trl.jsonl"
$HS export --workspace "$WS" --name hs3-preference --format dpo --out "$WS/exports/hs3-preference.dpo.jsonl"
$HS export --workspace "$WS" --name hs2-preference --format hf --out "$WS/exports/hs2-preference.hf"

echo "== 5. agreement, annotator quality and diverging preferences"
$HS analyze --workspace "$WS" --name ratings-ls
$HS analyze --workspace "$WS" --name hs2-preference
$HS analyze --workspace "$WS" --name hs2-disagreements

echo "== 6. reward models on the NemotronH hybrid backbone (short runs; quality bars are in bench/)"
$HS train --workspace "$WS" --name hs2-preference --objective bt --backbone small --num_train_epochs 2 --max_length 128 --out hs2-preference-bt
$HS eval --model "$WS/runs/hs2-preference-bt" --workspace "$WS" --name hs2-preference
$HS train --workspace "$WS" --name hs2 --objective regression --backbone small --num_train_epochs 2 --max_length 128 --out hs2-regression
$HS eval --model "$WS/runs/hs2-regression" --workspace "$WS" --name hs2

$HS datasets --workspace "$WS"
echo
echo "Results are in $WS:"
echo "  datasets:  $WS/datasets/<name>/{manifest.json,responses,ratings,preferences}.parquet"
echo "  analysis:  $WS/datasets/<name>/analysis/{agreement.json,annotators,pairs,items}.parquet"
echo "  runs:      $WS/runs/{hs2-preference-bt,hs2-regression}/ (config.json, model.safetensors, metrics.jsonl, eval.json, README.md)"
echo "  exports:   $WS/exports/"
echo "  truth:     $DATA/truth/"
echo
echo "Next:"
echo "  .venv/bin/helpsteer analyze --workspace $WS --name hs2-preference      # agreement + diverging pairs"
echo "  .venv/bin/helpsteer eval --model $WS/runs/hs2-preference-bt --workspace $WS --name hs2-preference"
echo "  make label-studio   # then: helpsteer annotate push --workspace $WS --name hs2 --kind ratings --url ... --api-key ..."
echo "  (the scoring API and the dashboard arrive with their issues)"
