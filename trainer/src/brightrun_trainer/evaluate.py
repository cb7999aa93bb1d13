"""``python -m brightrun_trainer.evaluate``: the loss of a base model, with and without a
LoRA adapter, on the assistant answers of a dataset (the same pairs, template and masking
as training). Prints one JSON object: ``{"pairs", "baseLoss", "adapterLoss"}``.

``compare`` is what every real run records at its end: on the held-out validation pairs,
the loss and perplexity of the base model and of the adapter, and the answers each
generates (greedy) scored against the dataset's answers with BLEU (sacrebleu's corpus BLEU)
and ROUGE-L (Google's rouge-score, F-measure), both 0-100.

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


# Generation is the slow part on a CPU: at most this many pairs, this many new tokens.
COMPARE_PAIRS = 16
COMPARE_NEW_TOKENS = 48


def _generate(model, tokenizer, pairs, max_new_tokens: int) -> list[str]:
    import torch

    from .encoding import _chat

    answers = []
    model.eval()
    with torch.no_grad():
        for p in pairs:
            prompt = tokenizer.apply_chat_template(
                _chat(p.context), tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
            ids = {k: v.to(model.device) for k, v in ids.items()}
            out = model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            answers.append(
                tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            )
    return answers


def text_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU and mean ROUGE-L F-measure of ``hypotheses`` against ``references``, 0-100."""
    import sacrebleu
    from rouge_score import rouge_scorer

    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [
        scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)
    ]
    return {"bleu": round(bleu, 4), "rougeL": round(100 * sum(rouge) / max(len(rouge), 1), 4)}


def compare(
    model,
    tokenizer,
    pairs,
    rows,
    max_pairs: int = COMPARE_PAIRS,
    max_new_tokens: int = COMPARE_NEW_TOKENS,
) -> dict:
    """Base model against adapter on the validation ``pairs`` (``rows``: their encodings):
    ``{"validationPairs", "generatedPairs", "base": {...}, "adapter": {...}}``, each side
    ``{"loss", "perplexity", "bleu", "rougeL"}``. ``model`` is the PeftModel."""
    import math

    sample = pairs[:max_pairs]
    references = [p.answer.content for p in sample]
    sides = {}
    with model.disable_adapter():
        base_loss = mean_loss(model, rows, tokenizer.pad_token_id)
        base_answers = _generate(model, tokenizer, sample, max_new_tokens)
    adapter_loss = mean_loss(model, rows, tokenizer.pad_token_id)
    adapter_answers = _generate(model, tokenizer, sample, max_new_tokens)
    for side, loss, answers in (
        ("base", base_loss, base_answers),
        ("adapter", adapter_loss, adapter_answers),
    ):
        sides[side] = {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            **text_scores(answers, references),
        }
    return {"validationPairs": len(rows), "generatedPairs": len(sample), **sides}


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
