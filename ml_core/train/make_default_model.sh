#!/usr/bin/env bash
# Recipe of the shipped default model (ml_core/assets/default), reproducible from the repository alone:
# synthetic data -> training -> export -> evaluation. CPU only is fine (see MODEL_CARD.md for the wall time).
# Usage: ml_core/train/make_default_model.sh   (env: PY, DATA, RUN, ITERATIONS, THREADS, DEVICE)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/synth-default}
RUN=${RUN:-runs/default-64}
ITERATIONS=${ITERATIONS:-}  # default: the config's train_params.num_iterations
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-auto}

# 1. data: 48 training + 16 held-out identities, 2 clips each, 64 frames at 128 px (Blender Workbench, bpy wheel)
"$PY" -m tools.synth --out "$DATA" --identities 48 --test-identities 16 --clips-per-identity 2 --frames 64 \
    --size 128 --aa FXAA --seed 0
# 2. training (resumable: rerun with --resume "$RUN/checkpoint.pt" and a larger --iterations to continue)
EXTRA=()
if [[ -f "$RUN/checkpoint.pt" ]]; then EXTRA+=(--resume "$RUN/checkpoint.pt"); fi
if [[ -n "$ITERATIONS" ]]; then EXTRA+=(--iterations "$ITERATIONS"); fi
"$PY" -m ml_core train --config ml_core/configs/default-64.yaml --data "$DATA" --out "$RUN" \
    --threads "$THREADS" --device "$DEVICE" --checkpoint-every 200 "${EXTRA[@]}"
# 2b. fine-tuning from stage 1 with a fresh schedule (ml_core/configs/default-64-finetune.yaml: 1200 iterations at
#     the base learning rates, then 400 at x0.1); it improved every learned channel of the held-out evaluation.
RUN2="$RUN-finetune"
EXTRA2=(--resume "$RUN/model.safetensors")
if [[ -f "$RUN2/checkpoint.pt" ]]; then EXTRA2=(--resume "$RUN2/checkpoint.pt"); fi
"$PY" -m ml_core train --config ml_core/configs/default-64-finetune.yaml --data "$DATA" --out "$RUN2" \
    --threads "$THREADS" --device "$DEVICE" --checkpoint-every 200 --seed 1 "${EXTRA2[@]}"
# 3. export: inference networks in float16 with the config embedded, plus a readable copy of the config
"$PY" -c "import sys; from ml_core.train.trainer import ship_model; ship_model(sys.argv[1], sys.argv[2])" \
    "$RUN2/model.safetensors" ml_core/assets/default
# 4. evaluation on the held-out identities (bench/RESULTS.md, MODEL_CARD.md)
"$PY" bench/eval_default_model.py --data "$DATA" --checkpoint ml_core/assets/default/model.safetensors \
    --json "$RUN2/eval.json"
