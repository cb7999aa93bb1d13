"""``python -m brightrun_trainer.evaluate``: the loss of a base model, with and without a
LoRA adapter, on the assistant answers of a dataset (the same pairs, template and masking
as training). Prints one JSON object: ``{"pairs", "baseLoss", "adapterLoss"}``.

    python -m brightrun_trainer.evaluate --base-model smollm2-135m --adapter ./adapter \\
        --dataset support-chats-v4.jsonl [--split train|validation|all]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import catalogue
from .encoding import Collator, encode_pair, ensure_chat_template
from .formats import parse_lines, split_pairs


def mean_loss(model, rows, pad_token_id: int, batch_size: int = 8) -> float:
    import torch

    collate = Collator(pad_token_id)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i : i + batch_size])
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(losses)
            count += int((labels != -100).sum())
    return total / max(count, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brightrun_trainer.evaluate", description=__doc__)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", choices=["train", "validation", "all"], default="train")
    parser.add_argument("--validation-split-ratio", type=float, default=0.1)
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)

    from peft import PeftModel

    model, tokenizer, _ = catalogue.load(args.base_model, args.models_dir)
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    with open(args.dataset, encoding="utf-8") as f:
        train, validation = split_pairs(parse_lines(f), args.validation_split_ratio)
    pairs = {"train": train, "validation": validation, "all": train + validation}[args.split]
    rows = []
    for p in pairs:
        e = encode_pair(tokenizer, p, 1024)
        rows.append({"input_ids": e.input_ids, "labels": e.labels})
    base = mean_loss(model, rows, tokenizer.pad_token_id)
    tuned = PeftModel.from_pretrained(model, args.adapter)
    adapted = mean_loss(tuned, rows, tokenizer.pad_token_id)
    print(json.dumps({"pairs": len(rows), "baseLoss": base, "adapterLoss": adapted}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
