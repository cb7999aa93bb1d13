"""Dataset formats, read with the same rules as BrightRun's validator (domain/src/dataset).

A line that the validator would reject is skipped here (a dataset only reaches training when it
validated without errors, so a skipped line means a format this reader does not know).

- ``brightrun-lora-v4``: ``{"conversation_id", "turns": [{"role", "content"}], "split"?}``; a
  role other than exactly ``system``/``user``/``assistant`` is ignored.
- ``brightrun-lora-v3``: ``{"id", "turns": [{"speaker", "text"}]}``; speakers named
  user/assistant/system (any case) keep that role, others take roles by order of appearance
  (first user, second assistant, any further one is ignored).
- ``openai-chat``: ``{"messages": [{"role", "content", "weight"?}]}``; content may be text
  parts; an assistant message with ``weight: 0`` is context, not trained on.
- ``sharegpt``: ``{"conversations": [{"from": "system|human|gpt", "value"}]}``.
- ``alpaca``: ``{"instruction", "input"?, "output"}``: one pair.

The last three carry no ids: a conversation's id is its line number. Conversations without an
explicit split go to validation by the FNV-1a hash of their id, exactly as the validator does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

V4 = "brightrun-lora-v4"
V3 = "brightrun-lora-v3"
OPENAI_CHAT = "openai-chat"
SHAREGPT = "sharegpt"
ALPACA = "alpaca"
FORMATS = (V4, V3, OPENAI_CHAT, SHAREGPT, ALPACA)

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    # False for an assistant message that is context only (openai-chat ``weight: 0``).
    trainable: bool = True


@dataclass
class Conversation:
    id: str
    line: int
    messages: list[Message] = field(default_factory=list)
    split: str | None = None


def split_of(conversation_id: str, ratio: float) -> str:
    """``validation`` when the id's FNV-1a hash falls in the first ``ratio`` of the buckets."""
    h = 0xCBF29CE484222325
    for byte in conversation_id.encode("utf-8"):
        h ^= byte
        h = (h * 0x00000100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "validation" if (h % 1_000_000) < ratio * 1_000_000.0 else "train"


def detect_format(obj: dict) -> str | None:
    if "conversation_id" in obj:
        return V4
    if "messages" in obj:
        return OPENAI_CHAT
    if "conversations" in obj:
        return SHAREGPT
    if "instruction" in obj and "output" in obj:
        return ALPACA
    if "id" in obj and "turns" in obj:
        return V3
    return None


def _strings(turn: object, who: str, what: str) -> tuple[str, str] | None:
    if not isinstance(turn, dict):
        return None
    a, b = turn.get(who), turn.get(what)
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None


def _turns(obj: dict, key: str) -> list | None:
    turns = obj.get(key)
    if not isinstance(turns, list) or not turns:
        return None
    return turns


def _parse_v4(obj: dict, line: int) -> Conversation | None:
    cid = obj.get("conversation_id")
    turns = _turns(obj, "turns")
    split = obj.get("split")
    if not isinstance(cid, str) or turns is None or split not in (None, "train", "validation"):
        return None
    meta = obj.get("metadata")
    if meta is not None and (
        not isinstance(meta, dict) or not isinstance(meta.get("topic", ""), (str, type(None)))
    ):
        return None
    fields = [_strings(t, "role", "content") for t in turns]
    if any(f is None for f in fields):
        return None
    messages = [Message(role, content) for role, content in fields if role in ROLES]
    return Conversation(cid, line, messages, split)


def _parse_v3(obj: dict, line: int) -> Conversation | None:
    cid = obj.get("id")
    turns = _turns(obj, "turns")
    if not isinstance(cid, str) or turns is None:
        return None
    fields = [_strings(t, "speaker", "text") for t in turns]
    if any(f is None for f in fields):
        return None
    by_order: list[str] = []
    messages = []
    for speaker, text in fields:
        role = speaker.lower() if speaker.lower() in ROLES else None
        if role is None:
            if speaker not in by_order:
                by_order.append(speaker)
            position = by_order.index(speaker)
            role = ("user", "assistant")[position] if position < 2 else None
        if role is not None:
            messages.append(Message(role, text))
    return Conversation(cid, line, messages)


def _text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            if not isinstance(part.get("text"), str):
                return None
            parts.append(part["text"])
        return "".join(parts)
    return None


def _parse_openai(obj: dict, line: int) -> Conversation | None:
    turns = _turns(obj, "messages")
    if turns is None or "tools" in obj or "functions" in obj:
        return None
    messages = []
    for m in turns:
        if not isinstance(m, dict) or m.get("tool_calls") or m.get("function_call"):
            return None
        role, text = m.get("role"), _text(m.get("content"))
        if text is None:
            return None
        if role not in ROLES:
            continue
        weight = m.get("weight", 1)
        messages.append(Message(role, text, trainable=not (role == "assistant" and weight == 0)))
    return Conversation(str(line), line, messages)


SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}


def _parse_sharegpt(obj: dict, line: int) -> Conversation | None:
    turns = _turns(obj, "conversations")
    if turns is None:
        return None
    fields = [_strings(t, "from", "value") for t in turns]
    if any(f is None for f in fields):
        return None
    messages = [
        Message(SHAREGPT_ROLES[who], value) for who, value in fields if who in SHAREGPT_ROLES
    ]
    return Conversation(str(line), line, messages)


def _parse_alpaca(obj: dict, line: int) -> Conversation | None:
    instruction, extra, output = obj.get("instruction"), obj.get("input", ""), obj.get("output")
    if not all(isinstance(v, str) for v in (instruction, output)) or not isinstance(
        extra, (str, type(None))
    ):
        return None
    prompt = instruction if not extra else f"{instruction}\n\n{extra}"
    return Conversation(str(line), line, [Message("user", prompt), Message("assistant", output)])


PARSERS = {
    V4: _parse_v4,
    V3: _parse_v3,
    OPENAI_CHAT: _parse_openai,
    SHAREGPT: _parse_sharegpt,
    ALPACA: _parse_alpaca,
}


def parse_lines(lines: Iterable[str], fmt: str | None = None) -> Iterator[Conversation]:
    """Conversations of a JSONL file, line numbers from 1. ``fmt=None`` detects each line's."""
    if fmt is not None and fmt not in PARSERS:
        raise ValueError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        line_format = fmt or detect_format(obj)
        if line_format is None:
            continue
        conversation = PARSERS[line_format](obj, number)
        if conversation is not None:
            yield conversation


@dataclass(frozen=True)
class Pair:
    """A user turn followed by an assistant turn: the unit BrightRun counts and trains.

    ``context`` is every message before the answer (system prompts included)."""

    conversation_id: str
    context: tuple[Message, ...]
    answer: Message


def pairs_of(conversation: Conversation) -> list[Pair]:
    """The validator's pairs: in the dialogue without system messages, each user message
    directly followed by an assistant message (that the format marks trainable)."""
    pairs = []
    previous: str | None = None
    for i, m in enumerate(conversation.messages):
        if m.role == "system":
            continue
        if previous == "user" and m.role == "assistant" and m.trainable:
            pairs.append(Pair(conversation.id, tuple(conversation.messages[:i]), m))
        previous = m.role
    return pairs


def split_pairs(
    conversations: Iterable[Conversation], validation_ratio: float
) -> tuple[list[Pair], list[Pair]]:
    train: list[Pair] = []
    validation: list[Pair] = []
    for c in conversations:
        side = c.split or split_of(c.id, validation_ratio)
        (validation if side == "validation" else train).extend(pairs_of(c))
    return train, validation
