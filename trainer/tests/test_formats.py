import json

from conftest import EXAMPLES

from brightrun_trainer.formats import (
    ALPACA,
    OPENAI_CHAT,
    SHAREGPT,
    V3,
    V4,
    pairs_of,
    parse_lines,
    split_of,
    split_pairs,
)


def lines(*objects) -> list[str]:
    return [o if isinstance(o, str) else json.dumps(o) for o in objects]


def test_the_split_hash_is_the_validators():
    # The same ids are pinned in domain/src/dataset/validator/tests.rs.
    validation = [i for i in range(60) if split_of(f"conv-{i}", 0.1) == "validation"]
    assert validation == [8, 14, 24, 31, 39, 46, 55]
    assert split_of("anything", 0.0) == "train"
    assert split_of("anything", 1.0) == "validation"


def test_v4_keeps_exact_roles_and_ignores_unknown_ones():
    [c] = parse_lines(
        lines(
            {
                "conversation_id": "c1",
                "split": "train",
                "turns": [
                    {"role": "system", "content": "be brief"},
                    {"role": "User", "content": "ignored: roles are lowercase"},
                    {"role": "tool", "content": "ignored"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                ],
            }
        ),
        V4,
    )
    assert [m.role for m in c.messages] == ["system", "user", "assistant"]
    assert c.split == "train"
    [pair] = pairs_of(c)
    assert [m.content for m in pair.context] == ["be brief", "hi"]
    assert pair.answer.content == "hello"


def test_lines_the_validator_rejects_are_skipped():
    found = list(
        parse_lines(
            lines(
                "{not json",
                {"conversation_id": "a", "turns": []},
                {"turns": [{"role": "user", "content": "x"}]},
                {
                    "conversation_id": "b",
                    "split": "test",
                    "turns": [{"role": "user", "content": "x"}],
                },
                {"conversation_id": "c", "turns": [{"role": "user", "content": 3}]},
                "",
                {"conversation_id": "ok", "turns": [{"role": "user", "content": "x"}]},
            ),
            V4,
        )
    )
    assert [(c.id, c.line) for c in found] == [("ok", 7)]


def test_v3_speakers_take_roles_by_name_then_by_order():
    [c] = parse_lines(
        lines(
            {
                "id": "l1",
                "turns": [
                    {"speaker": "SYSTEM", "text": "context"},
                    {"speaker": "Customer", "text": "q1"},
                    {"speaker": "Agent", "text": "a1"},
                    {"speaker": "Supervisor", "text": "third participant: ignored"},
                    {"speaker": "Customer", "text": "q2"},
                    {"speaker": "Agent", "text": "a2"},
                ],
            }
        ),
        V3,
    )
    assert [(m.role, m.content) for m in c.messages] == [
        ("system", "context"),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
    ]
    assert [p.answer.content for p in pairs_of(c)] == ["a1", "a2"]


def test_openai_chat_weight_zero_is_context_and_tools_are_refused():
    found = list(
        parse_lines(
            lines(
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "q1"}]},
                        {"role": "assistant", "content": "a1", "weight": 0},
                        {"role": "user", "content": "q2"},
                        {"role": "assistant", "content": "a2"},
                    ]
                },
                {"messages": [{"role": "user", "content": "x"}], "tools": []},
            ),
            OPENAI_CHAT,
        )
    )
    [c] = found
    assert c.id == "1"
    [pair] = pairs_of(c)
    assert pair.answer.content == "a2"
    assert [m.content for m in pair.context] == ["q1", "a1", "q2"]


def test_sharegpt_and_alpaca():
    [s] = parse_lines(
        lines({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}),
        SHAREGPT,
    )
    assert [(m.role, m.content) for m in s.messages] == [("user", "q"), ("assistant", "a")]
    [a, b] = parse_lines(
        lines(
            {"instruction": "Translate", "input": "chat", "output": "cat"},
            {"instruction": "Say hi", "input": "", "output": "hi"},
        ),
        ALPACA,
    )
    assert a.messages[0].content == "Translate\n\nchat"
    assert b.messages[0].content == "Say hi"
    assert pairs_of(b)[0].answer.content == "hi"


def test_the_examples_have_the_validators_pair_counts():
    with open(EXAMPLES / "support-chats-v4.jsonl") as f:
        train, validation = split_pairs(parse_lines(f), 0.1)
    # README: the preview of this file counts 24 pairs.
    assert len(train) + len(validation) == 24
    assert validation, "the file has an explicit validation split"
    with open(EXAMPLES / "legacy-chats-v3.jsonl") as f:
        train, validation = split_pairs(parse_lines(f), 0.1)
    assert len(train) + len(validation) == 6


def test_the_new_format_examples_have_the_validators_pair_counts():
    # The same counts are pinned in domain/src/dataset/validator/tests.rs.
    for name, fmt, pairs in [
        ("support-chats-openai.jsonl", OPENAI_CHAT, 23),
        ("support-chats-sharegpt.jsonl", SHAREGPT, 24),
        ("support-faq-alpaca.jsonl", ALPACA, 18),
    ]:
        with open(EXAMPLES / name) as f:
            conversations = list(parse_lines(f, fmt))
        train, validation = split_pairs(conversations, 0.1)
        assert len(conversations) == 18, name
        assert len(train) + len(validation) == pairs, name
