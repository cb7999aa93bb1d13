#!/usr/bin/env bash
# Builds (once per machine) and prints the path of the CPU inference engine's environment:
# llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`), compiled from
# its PyPI source for this machine, every package pinned by inference/requirements.lock; and
# llama.cpp's own LoRA converter from that same source, under share/llama.cpp (run by the
# trainer's Python: brightrun_trainer.gguf_adapter). Kept outside the clone, keyed by the
# lockfile's hash (about 10 minutes to compile on 2 cores, once).
#   scripts/inference-env.sh            -> prints the venv folder (builds it when missing)
#   BRIGHTRUN_CACHE_DIR=/some/dir ...   -> where environments are kept (as trainer-env.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lock="$root/inference/requirements.lock"
key="$(sha256sum "$lock" | cut -c1-12)"
default_cache=/var/cache/brightrun; [[ -w /var/cache ]] || default_cache="$HOME/.cache/brightrun"
cache="${BRIGHTRUN_CACHE_DIR:-$default_cache}"
venv="$cache/inference-venv-$key"
if [[ ! -f "$venv/.complete" ]]; then
  mkdir -p "$cache"
  exec 9>"$cache/.inference-env.lock"
  flock 9
  if [[ ! -f "$venv/.complete" ]]; then
    echo "building the inference environment in $venv (once per machine)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    version="$(sed -n 's/^llama_cpp_python==//p' "$lock")"
    src="$(mktemp -d)"
    trap 'rm -rf "$src"' EXIT
    # The source once: compiled into the environment, and its converter kept beside it.
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
      --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$src" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$lock" \
      --no-binary llama-cpp-python --find-links "$src" >&2
    tar -xzf "$src/llama_cpp_python-$version.tar.gz" -C "$src"
    vendor="$src/llama_cpp_python-$version/vendor/llama.cpp"
    mkdir -p "$venv/share/llama.cpp"
    cp -r "$vendor/convert_lora_to_gguf.py" "$vendor/convert_hf_to_gguf.py" "$vendor/conversion" \
      "$vendor/gguf-py" "$venv/share/llama.cpp/"
    touch "$venv/.complete"
  fi
fi
echo "$venv"
