"""Turns training pairs into token ids with the base model's chat template, and labels that
count the loss on the assistant's answer only (every other position is -100)."""

from __future__ import annotations

from dataclasses import dataclass

from .formats import Message, Pair

IGNORE = -100

# Used only when a tokenizer carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def _chat(messages: tuple[Message, ...] | list[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in messages]


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE


def encode_pair(tokenizer, pair: Pair, max_length: int) -> Encoded:
    """The prompt is the template applied to the context with the generation prompt; the answer
    is what the template adds for the assistant's message (its end-of-turn marker included, so
    the model learns to stop). Too long: the context is cut from the left, then the answer."""
    prompt = tokenizer.apply_chat_template(
        _chat(pair.context), tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        _chat(pair.context + (pair.answer,)), tokenize=False, add_generation_prompt=False
    )
    if full.startswith(prompt):
        answer_text = full[len(prompt) :]
    else:  # a template that renders the context differently once an answer follows
        answer_text = pair.answer.content + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    answer_ids = answer_ids[:max_length]
    keep = max_length - len(answer_ids)
    prompt_ids = prompt_ids[len(prompt_ids) - keep :] if keep > 0 else []
    return Encoded(prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + list(answer_ids))


class Collator:
    """Pads a batch on the right."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict]):
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids, labels, mask = [], [], []
        for b in batch:
            n = len(b["input_ids"])
            pad = width - n
            ids.append(b["input_ids"] + [self.pad_token_id] * pad)
            labels.append(b["labels"] + [IGNORE] * pad)
            mask.append([1] * n + [0] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }
