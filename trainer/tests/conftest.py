"""A tiny randomly initialised Llama and a small BPE tokenizer with a chat template, built once
per test session into a models folder in the Hugging Face cache layout (catalogue id
``tiny-random``), so the tests exercise the same loading path as a real base model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from brightrun_trainer import catalogue
    from brightrun_trainer.tiny import bpe_tokenizer

    root = tmp_path_factory.mktemp("models")
    texts = [
        line
        for name in ("support-chats-v4.jsonl", "legacy-chats-v3.jsonl")
        for line in (EXAMPLES / name).read_text().splitlines()
    ]
    tokenizer = bpe_tokenizer(texts, vocab_size=600)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    catalogue.save_snapshot(root, catalogue.CATALOGUE["tiny-random"].repo, "test", model, tokenizer)
    return root


def hyperparameters(**overrides) -> dict:
    h = {
        "learningRate": 5e-3,
        "batchSize": 4,
        "numEpochs": 2,
        "warmupSteps": 0,
        "loraRank": 4,
        "loraAlpha": 8,
        "loraDropout": 0.0,
        "targetModules": ["q_proj", "v_proj"],
        "optimizerType": "adamw",
        "weightDecay": 0.01,
        "gradientAccumulationSteps": 1,
        "maxGradNorm": 1.0,
        "scheduler": "cosine",
    }
    h.update(overrides)
    return h


def make_spec(dataset: Path, total_steps=6, interval=2, **overrides) -> dict:
    spec = {
        "idempotencyKey": "job-1",
        "datasetUrl": dataset.resolve().as_uri(),
        "baseModel": "tiny-random",
        "hyperparameters": hyperparameters(),
        "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1},
        "totalSteps": total_steps,
        "checkpointInterval": interval,
        "validationSplitRatio": 0.1,
    }
    spec.update(overrides)
    return spec


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())
