"""A PEFT adapter served by the CPU engine: converted by llama.cpp's own converter and loaded by
llama-cpp-python's OpenAI-compatible server over SmolLM2's GGUF, it changes what the model
answers; an adapter the engine cannot apply is refused before it is converted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from brightrun_trainer import gguf_adapter

# SmolLM2-135M: 30 layers, hidden 576, 3 key/value heads of 64.
LAYERS, HIDDEN, KV = 30, 576, 192


def engine_env() -> Path:
    venv = os.environ.get("INFERENCE_VENV")
    if not venv:
        pytest.skip("INFERENCE_VENV is unset: scripts/test.sh builds it (scripts/inference-env.sh)")
    return Path(venv)


def lora_adapter(folder: Path, rank: int = 8, seed: int = 0) -> Path:
    """A PEFT LoRA on q_proj and v_proj whose B is not zero, so it changes the model."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for module, out in (("q_proj", HIDDEN), ("v_proj", KV)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, HIDDEN, generator=generator)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out, rank, generator=generator) * 0.05
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "modules_to_save": None,
        "bias": "none",
        "fan_in_fan_out": False,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(venv: Path, model: str, lora: str | None, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [str(venv / "bin" / "python"), "-m", "llama_cpp.server", "--model", model]
    args += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "served"]
    args += ["--n_ctx", "1024", "--seed", "0"]
    if lora:
        args += ["--lora_path", lora]
    process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=1):
                return process, base
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the engine did not answer in 60 s: {log.read_text()[-2000:]}")


def first_token_logprobs(base: str) -> dict[str, float]:
    body = {
        "model": "served",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
    }
    request = urllib.request.Request(
        f"{base}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        reply = json.load(answer)
    assert reply["choices"][0]["message"]["role"] == "assistant", reply
    assert reply["usage"]["completion_tokens"] == 1, reply
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    return {t["token"]: t["logprob"] for t in top}


def test_an_adapter_the_engine_cannot_apply_whole_is_refused():
    for config, word in [
        ({"target_modules": ["q_proj", "lm_head"]}, "lm_head"),
        ({"target_modules": ["q_proj"], "modules_to_save": ["embed_tokens"]}, "modules_to_save"),
        ({"target_modules": "all-linear"}, "pattern"),
        ({"target_modules": ["q_proj"], "use_dora": True}, "DoRA"),
    ]:
        with pytest.raises(gguf_adapter.NotServable) as refused:
            gguf_adapter.check_servable(config)
        assert refused.value.code == "ADAPTER_NOT_SERVABLE"
        assert word in refused.value.message
    gguf_adapter.check_servable({"target_modules": ["q_proj", "v_proj"], "modules_to_save": None})


def test_a_converted_adapter_changes_what_the_engine_answers(tmp_path):
    venv = engine_env()
    adapter = lora_adapter(tmp_path / "adapter")
    served = gguf_adapter.convert(
        "smollm2-135m", adapter, venv / "share" / "llama.cpp", tmp_path / "adapter.gguf"
    )
    assert Path(served["lora"]).stat().st_size > 1_000_000
    plain, plain_url = serve(venv, served["model"], None, tmp_path / "plain.log")
    tuned, tuned_url = serve(venv, served["model"], served["lora"], tmp_path / "tuned.log")
    try:
        before = first_token_logprobs(plain_url)
        after = first_token_logprobs(tuned_url)
    finally:
        plain.kill()
        tuned.kill()
    assert "llama_adapter_lora_init" in (tmp_path / "tuned.log").read_text()
    # The same prompt, greedy: the adapter moves the first token's distribution.
    shared = set(before) & set(after)
    moved = max((abs(before[t] - after[t]) for t in shared), default=1.0)
    assert before != after and moved > 1e-3, (before, after)
