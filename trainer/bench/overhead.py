"""Trainer overhead and throughput: ``brightrun_trainer`` next to a plain PEFT training loop on
the same model, data and settings, in one run.

    PYTHONPATH=trainer/src python trainer/bench/overhead.py            # smollm2-135m on CPU
    PYTHONPATH=trainer/src python trainer/bench/overhead.py --random-1b # a random 1B Llama (GPU)

Every example is the same conversation (64 copies), so every batch has the same shape and
the two loops do identical work per step. Seconds per step are medians over the steps after
the first (warm-up); the trainer's steps are timed from its own reports (``atSeconds``), so
its reporting (fsynced events, state file) is inside the figure. No checkpoint falls inside
the measured steps (their cost is the save itself, not the loop's). On a GPU it also prints
MFU (6N FLOPs per token over the device's dense bf16 peak) and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def bench_dataset(folder: Path, copies: int) -> Path:
    first = json.loads((ROOT / "examples" / "support-chats-v4.jsonl").read_text().splitlines()[0])
    path = folder / "bench.jsonl"
    with open(path, "w") as f:
        for i in range(copies):
            f.write(json.dumps({**first, "conversation_id": f"bench-{i}", "split": "train"}) + "\n")
    return path


def random_1b(models: Path):
    """A Llama of 1B parameters, randomly initialised, with a small BPE tokenizer (the GPU
    machine has no network and carries at most 64 MiB, so no real weights travel)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from brightrun_trainer import catalogue
    from brightrun_trainer.tiny import bpe_tokenizer

    text = (ROOT / "examples" / "support-chats-v4.jsonl").read_text().splitlines()
    tok = bpe_tokenizer(text, vocab_size=2000)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=2048,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    catalogue.CATALOGUE["bench-random-1b"] = catalogue.Source("brightrun/bench-random-1b")
    catalogue.save_snapshot(models, "brightrun/bench-random-1b", "bench", model, tok)
    return "bench-random-1b"


def spec_for(data: Path, model_id: str, steps: int, batch: int) -> dict:
    return {
        "idempotencyKey": "bench",
        "datasetUrl": data.resolve().as_uri(),
        "baseModel": model_id,
        "hyperparameters": {
            "learningRate": 2e-4,
            "batchSize": batch,
            "numEpochs": 100,
            "warmupSteps": 0,
            "loraRank": 16,
            "loraAlpha": 32,
            "loraDropout": 0.0,
            "targetModules": ["q_proj", "v_proj"],
            "optimizerType": "adamw",
            "weightDecay": 0.01,
            "gradientAccumulationSteps": 1,
            "maxGradNorm": 1.0,
            "scheduler": "cosine",
        },
        "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1},
        "totalSteps": steps,
        "checkpointInterval": steps + 1,
        "validationSplitRatio": 0.0,
    }


def plain_loop(spec: dict, models: Path) -> dict:
    """The same thing written directly against PEFT and PyTorch: no Trainer, no reports."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    from brightrun_trainer import catalogue
    from brightrun_trainer.encoding import Collator, encode_pair, ensure_chat_template
    from brightrun_trainer.formats import parse_lines, split_pairs

    h = spec["hyperparameters"]
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    model, tok, _ = catalogue.load(spec["baseModel"], models, dtype=dtype)
    ensure_chat_template(tok)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = get_peft_model(
        model,
        LoraConfig(
            r=h["loraRank"],
            lora_alpha=h["loraAlpha"],
            lora_dropout=h["loraDropout"],
            target_modules=h["targetModules"],
            task_type="CAUSAL_LM",
        ),
    ).to(device)
    with open(Path(spec["datasetUrl"][len("file://") :])) as f:
        train, _ = split_pairs(parse_lines(f), 0.0)
    rows = []
    for p in train:
        e = encode_pair(tok, p, 1024)
        rows.append({"input_ids": e.input_ids, "labels": e.labels})
    collate = Collator(tok.pad_token_id)
    batch = collate(rows[: h["batchSize"]])
    batch = {k: v.to(device) for k, v in batch.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=h["learningRate"], weight_decay=h["weightDecay"])
    schedule = get_cosine_schedule_with_warmup(optimizer, 0, spec["totalSteps"])
    model.train()
    times = []
    for _ in range(spec["totalSteps"]):
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, h["maxGradNorm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    tokens = int(batch["attention_mask"].sum())
    return {"seconds": times, "tokensPerStep": tokens, "params": model.num_parameters()}


def brightrun(spec: dict, models: Path, folder: Path) -> dict:
    from brightrun_trainer.train import run

    run_dir = folder / "run"
    assert run(spec, run_dir, models) == 0, (run_dir / "state.json").read_text()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    metrics = [e for e in events if e["kind"] == "metric"]
    ends = [m["atSeconds"] for m in metrics]
    throughput = statistics.median(m["throughput"] for m in metrics[1:])
    return {
        "seconds": [b - a for a, b in zip(ends, ends[1:], strict=False)],
        "throughput": throughput,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--random-1b", action="store_true", help="a random 1B Llama (for GPUs)")
    args = parser.parse_args()

    import torch

    folder = Path(tempfile.mkdtemp(prefix="brightrun-bench-"))
    models = folder / "models"
    data = bench_dataset(folder, copies=max(64, args.batch * args.steps))
    if args.random_1b:
        model_id = random_1b(models)
    else:
        model_id = "smollm2-135m"
        models = Path(__import__("brightrun_trainer.catalogue").catalogue.models_dir())
    spec = spec_for(data, model_id, args.steps, args.batch)

    plain = plain_loop(spec, models)
    ours = brightrun(spec, models, folder)
    plain_step = statistics.median(plain["seconds"][1:])
    our_step = statistics.median(ours["seconds"][1:])
    tokens_per_second = plain["tokensPerStep"] / plain_step
    result = {
        "model": model_id,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "batchSize": args.batch,
        "tokensPerStep": plain["tokensPerStep"],
        "plainSecondsPerStep": round(plain_step, 4),
        "trainerSecondsPerStep": round(our_step, 4),
        "overheadRatio": round(our_step / plain_step, 3),
        "plainTokensPerSecond": round(tokens_per_second, 1),
        "trainerReportedTokensPerSecond": round(ours["throughput"], 1),
    }
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            flops = 6 * plain["params"] * tokens_per_second
            result["mfu"] = round(flops / (peak * 1e12), 4)
        result["peakGpuMemoryGb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result, indent=2))
    return 0 if math.isfinite(our_step) else 1


if __name__ == "__main__":
    sys.exit(main())
