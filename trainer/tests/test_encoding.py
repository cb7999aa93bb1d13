from brightrun_trainer.encoding import IGNORE, encode_pair
from brightrun_trainer.formats import Message, Pair


def tokenizer(models_dir):
    from transformers import AutoTokenizer

    from brightrun_trainer import catalogue

    path = catalogue.snapshot(models_dir, catalogue.CATALOGUE["tiny-random"].repo)
    return AutoTokenizer.from_pretrained(path)


PAIR = Pair(
    "c1",
    (Message("system", "Be brief."), Message("user", "How do I reset my password?")),
    Message("assistant", "Use the reset link on the sign-in page."),
)


def test_only_the_answer_is_labelled(models_dir):
    tok = tokenizer(models_dir)
    e = encode_pair(tok, PAIR, 1024)
    assert len(e.input_ids) == len(e.labels)
    first = next(i for i, label in enumerate(e.labels) if label != IGNORE)
    assert all(label == IGNORE for label in e.labels[:first])
    assert e.labels[first:] == e.input_ids[first:]
    answer = tok.decode(e.input_ids[first:])
    assert answer == "Use the reset link on the sign-in page.<|im_end|>\n"
    prompt = tok.decode(e.input_ids[:first])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "How do I reset my password?" in prompt


def test_a_long_context_is_cut_from_the_left_and_the_answer_kept(models_dir):
    tok = tokenizer(models_dir)
    long_pair = Pair(
        "c2", (Message("user", "word " * 2000),), Message("assistant", "Short answer.")
    )
    e = encode_pair(tok, long_pair, 64)
    assert len(e.input_ids) == 64
    kept = [t for t, label in zip(e.input_ids, e.labels, strict=True) if label != IGNORE]
    assert tok.decode(kept) == "Short answer.<|im_end|>\n"
