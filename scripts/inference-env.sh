#!/usr/bin/env bash
# Builds (once per machine) and prints the path of the CPU inference engine's environment:
# llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`), compiled from
# its PyPI source for this machine, every package pinned by inference/requirements.lock
# (scripts/pinned-venv.sh, keyed by the lockfile's hash); and llama.cpp's own LoRA converter
# from that same source, under share/llama.cpp (run by the trainer's Python:
# brightrun_trainer.gguf_adapter). About 10 minutes to compile on 2 cores, once.
#   scripts/inference-env.sh            -> prints the venv folder (builds it when missing)
#   VENV_CACHE_DIR=/some/dir ...        -> where environments are kept (as pinned-venv.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
lock=inference/requirements.lock
version="$(sed -n 's/^llama_cpp_python==//p' "$lock")"
sources="${VENV_CACHE_DIR:-/var/cache/brightrun}/llama-cpp-python-$version"
sdist="$sources/llama_cpp_python-$version.tar.gz"
if [[ ! -f "$sdist" ]]; then
  rm -rf "$sources.tmp"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$sources.tmp" >&2
  rm -rf "$sources"
  mv "$sources.tmp" "$sources"
fi
# The package is compiled from that source, never taken as a wheel built elsewhere.
venv="$(PIP_NO_BINARY=llama-cpp-python PIP_FIND_LINKS="$sources" scripts/pinned-venv.sh inference "$lock")"
converter="$venv/share/llama.cpp"
if [[ ! -f "$converter/convert_lora_to_gguf.py" ]]; then
  unpacked="$(mktemp -d)"
  trap 'rm -rf "$unpacked"' EXIT
  tar -xzf "$sdist" -C "$unpacked"
  vendor="$unpacked/llama_cpp_python-$version/vendor/llama.cpp"
  rm -rf "$converter.tmp"
  mkdir -p "$converter.tmp"
  cp -r "$vendor/convert_lora_to_gguf.py" "$vendor/convert_hf_to_gguf.py" "$vendor/conversion" \
    "$vendor/gguf-py" "$converter.tmp/"
  rm -rf "$converter"
  mv "$converter.tmp" "$converter"
fi
echo "$venv"
