"""A trained PEFT adapter as llama.cpp serves it: a LoRA GGUF, made by llama.cpp's own
converter (``convert_lora_to_gguf.py``, from the llama-cpp-python source the inference
environment was built from), over the base model's GGUF.

    python -m brightrun_trainer.gguf_adapter --base-model smollm2-135m \\
        --adapter DIR --converter DIR --out adapter.gguf

prints one JSON line: the base model's GGUF and the adapter's, for ``llama_cpp.server``'s
``--model`` and ``--lora_path``. An adapter llama.cpp cannot apply as trained (modules it
does not know, ``modules_to_save``) is refused with a code and a sentence, never served as
the base model in disguise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import catalogue

# The projections llama.cpp's Llama graph applies a LoRA to.
SERVABLE_MODULES = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)


class NotServable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def check_servable(adapter_config: dict) -> None:
    """Refuses an adapter the engine would not apply whole."""
    modules = adapter_config.get("target_modules") or []
    if isinstance(modules, str):
        raise NotServable(
            "ADAPTER_NOT_SERVABLE",
            f"target_modules is a pattern ({modules!r}): llama.cpp needs the module names",
        )
    unknown = sorted(set(modules) - SERVABLE_MODULES)
    if unknown:
        raise NotServable(
            "ADAPTER_NOT_SERVABLE",
            f"llama.cpp applies LoRA to {', '.join(sorted(SERVABLE_MODULES))}, "
            f"not to {', '.join(unknown)}",
        )
    if adapter_config.get("modules_to_save"):
        raise NotServable(
            "ADAPTER_NOT_SERVABLE",
            "modules_to_save trains whole modules, which a llama.cpp LoRA cannot hold",
        )
    if adapter_config.get("use_dora"):
        raise NotServable("ADAPTER_NOT_SERVABLE", "llama.cpp cannot apply a DoRA adapter")


def base_gguf(model_id: str) -> Path:
    """The GGUF file of a base model, as llama.cpp loads it."""
    source = catalogue.resolve(model_id)
    if source.gguf_package:
        spec = importlib.util.find_spec(source.gguf_package)
        if spec is not None and spec.origin:
            path = Path(spec.origin).parent / source.gguf_file
            if path.exists():
                return path
    raise catalogue.ModelUnavailable(
        "BASE_MODEL_UNAVAILABLE",
        f"no GGUF of {model_id!r} on this machine: the CPU engine serves smollm2-135m",
    )


def write_base_config(model_id: str, into: Path) -> Path:
    """The base model's Hugging Face config in `into` (all the converter reads of it)."""
    from transformers import AutoConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = catalogue.resolve(model_id)
    snapshot = catalogue.snapshot(catalogue.models_dir(), source.repo)
    if snapshot is not None:
        config = AutoConfig.from_pretrained(snapshot, local_files_only=True)
    else:
        gguf = base_gguf(model_id)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if not config.architectures:
        # A config read from a GGUF names no architecture; the converter looks for one.
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    config.save_pretrained(into)
    return into


def convert(model_id: str, adapter: Path, converter: Path, out: Path) -> dict:
    """Converts `adapter` (a PEFT folder) into `out`; answers what the engine loads."""
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    check_servable(adapter_config)
    base = base_gguf(model_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as config_dir:
        write_base_config(model_id, Path(config_dir))
        env = dict(os.environ)
        # The converter's own gguf-py, which matches it, before any other.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(converter / "gguf-py"), str(converter), env.get("PYTHONPATH", "")]
        )
        env.setdefault("HF_HUB_OFFLINE", "1")
        done = subprocess.run(
            [
                sys.executable,
                str(converter / "convert_lora_to_gguf.py"),
                "--base",
                config_dir,
                "--outtype",
                "f32",
                "--outfile",
                str(out),
                str(adapter),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise NotServable("ADAPTER_CONVERSION_FAILED", " / ".join(tail) or "the converter failed")
    return {"model": str(base), "lora": str(out), "baseModel": model_id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--converter", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        print(json.dumps(convert(args.base_model, args.adapter, args.converter, args.out)))
        return 0
    except (NotServable, catalogue.ModelUnavailable) as refused:
        print(json.dumps({"error": {"code": refused.code, "message": refused.message}}))
        return 2


if __name__ == "__main__":
    sys.exit(main())
