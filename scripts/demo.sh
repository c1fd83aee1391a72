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

$HS datasets --workspace "$WS"
echo
echo "Results are in $WS:"
echo "  datasets:  $WS/datasets/<name>/{manifest.json,responses,ratings,preferences}.parquet"
echo "  analysis:  $WS/datasets/<name>/analysis/{agreement.json,annotators,pairs,items}.parquet"
echo "  exports:   $WS/exports/"
echo "  truth:     $DATA/truth/"
