#!/usr/bin/env bash
# Prints the path of a Python environment holding a pinned requirements file, built once per
# machine (in $VENV_CACHE_DIR, default /var/cache/brightrun) and keyed by the file's hash.
#   venv="$(scripts/pinned-venv.sh <name> <requirements.txt>)"
set -euo pipefail
name="$1"
requirements="$2"
key="$(sha256sum "$requirements" | cut -c1-12)"
venv="${VENV_CACHE_DIR:-/var/cache/brightrun}/$name-$key"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "building the $name environment in $venv (once per machine)" >&2
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  # A venv records its path: point the entry points at the final one, then move it there
  # (so a folder at the final path is always complete).
  sed -i "s|$venv.tmp|$venv|g" "$venv.tmp"/bin/*
  rm -rf "$venv"
  mv "$venv.tmp" "$venv"
fi
echo "$venv"
