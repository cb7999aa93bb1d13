"""A whole run on the tiny model: the reports the saga consumes, the checkpoints, and an
adapter that PEFT loads back onto the base model."""

import json
import math

import pytest
from conftest import EXAMPLES, events, hyperparameters, make_spec, state

from brightrun_trainer.train import run

METRIC_KEYS = {
    "seq",
    "kind",
    "step",
    "epoch",
    "trainingLoss",
    "learningRate",
    "gradientNorm",
    "throughput",
    "gpuUtilization",
    "memoryMb",
    "atSeconds",
}


@pytest.fixture(scope="module")
def finished(models_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    # A high learning rate: the tiny random model must visibly learn in six steps.
    spec = make_spec(
        EXAMPLES / "support-chats-v4.jsonl",
        total_steps=6,
        interval=2,
        hyperparameters=hyperparameters(learningRate=3e-2, loraRank=8, loraAlpha=16),
    )
    assert run(spec, run_dir, models_dir) == 0
    return run_dir


def test_the_run_completes_with_every_report(finished):
    s = state(finished)
    assert s["status"] == "completed"
    assert s["stage"] == "completed"
    assert s["step"] == 6 and s["totalSteps"] == 6 and s["totalEpochs"] == 2
    assert s["datasetBytes"] == (EXAMPLES / "support-chats-v4.jsonl").stat().st_size
    ev = events(finished)
    assert [e["seq"] for e in ev] == list(range(1, len(ev) + 1))
    metrics = [e for e in ev if e["kind"] == "metric"]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for m in metrics:
        assert METRIC_KEYS <= m.keys(), m
        assert m["trainingLoss"] > 0 and m["learningRate"] > 0 and m["throughput"] > 0
    assert [m["step"] for m in metrics if "validationLoss" in m] == [2, 4, 6]
    checkpoints = [e for e in ev if e["kind"] == "checkpoint"]
    assert [(c["id"], c["step"]) for c in checkpoints] == [
        ("ckpt-2", 2),
        ("ckpt-4", 4),
        ("ckpt-6", 6),
    ]
    logs = [e for e in ev if e["kind"] == "log"]
    assert [e["index"] for e in logs] == list(range(len(logs)))
    assert {e["level"] for e in logs} <= {"info", "warning", "error"}
    ev_loss = s["evaluation"]
    assert set(ev_loss) == {
        "initialValidationLoss",
        "finalTrainingLoss",
        "finalValidationLoss",
        "bestValidationLoss",
        "perplexity",
        "comparison",
        "adapterStep",
    }
    assert ev_loss["bestValidationLoss"] <= ev_loss["finalValidationLoss"]
    # Without early stopping the adapter is the last step's.
    assert ev_loss["adapterStep"] == 6


def test_base_and_adapter_are_compared_on_the_validation_pairs(finished):
    comparison = state(finished)["evaluation"]["comparison"]
    assert comparison["validationPairs"] > 0
    assert 0 < comparison["generatedPairs"] <= comparison["validationPairs"]
    for side in ("base", "adapter"):
        scores = comparison[side]
        assert set(scores) == {"loss", "perplexity", "bleu", "rougeL"}
        assert 0 <= scores["bleu"] <= 100 and 0 <= scores["rougeL"] <= 100
        assert abs(math.exp(scores["loss"]) - scores["perplexity"]) < 1e-6 * scores["perplexity"]
    # The adapter's loss is the run's own final validation loss; trained, it beats the base.
    assert comparison["adapter"]["loss"] < comparison["base"]["loss"]
    logs = [e["message"] for e in events(finished) if e["kind"] == "log"]
    assert any(m.startswith("base vs adapter on ") for m in logs), logs


def test_text_scores_are_sacrebleu_s_and_rouge_score_s():
    from brightrun_trainer.evaluate import text_scores

    same = text_scores(["the parcel arrives on monday"], ["the parcel arrives on monday"])
    assert same == {"bleu": 100.0, "rougeL": 100.0}
    apart = text_scores(["hello there"], ["the parcel arrives on monday"])
    assert apart["bleu"] < 5 and apart["rougeL"] == 0.0


def test_the_loss_falls(finished):
    metrics = [e for e in events(finished) if e["kind"] == "metric"]
    assert metrics[-1]["trainingLoss"] < metrics[0]["trainingLoss"]
    ev = state(finished)["evaluation"]
    assert ev["finalValidationLoss"] < ev["initialValidationLoss"]


def test_each_checkpoint_keeps_its_optimizer_state(finished):
    for step in (2, 4, 6):
        folder = finished / "checkpoints" / f"checkpoint-{step}"
        assert (folder / "adapter_model.safetensors").exists()
        assert (folder / "optimizer.pt").exists()
        assert (folder / "scheduler.pt").exists()


def test_each_checkpoint_offers_its_adapter_with_size_and_checksum(finished):
    import hashlib

    checkpoints = [e for e in events(finished) if e["kind"] == "checkpoint"]
    digests = set()
    for c in checkpoints:
        adapter = c["adapter"]
        path = finished / "checkpoints" / f"checkpoint-{c['step']}" / "adapter_model.safetensors"
        assert adapter["name"] == "adapter_model.safetensors"
        assert adapter["path"] == str(path)
        assert adapter["sizeBytes"] == path.stat().st_size
        assert adapter["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        digests.add(adapter["sha256"])
    # The weights move between checkpoints.
    assert len(digests) == len(checkpoints)


def test_the_artifacts_load_with_peft(finished, models_dir):
    import hashlib

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from brightrun_trainer import catalogue

    artifacts = {a["name"]: a for a in state(finished)["artifacts"]}
    assert set(artifacts) == {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"}
    for a in artifacts.values():
        data = open(a["path"], "rb").read()
        assert len(data) == a["sizeBytes"]
        assert hashlib.sha256(data).hexdigest() == a["sha256"]
    config = json.loads(open(artifacts["adapter_config.json"]["path"]).read())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]

    base_path = catalogue.snapshot(models_dir, catalogue.CATALOGUE["tiny-random"].repo)
    base = AutoModelForCausalLM.from_pretrained(base_path)
    tuned = PeftModel.from_pretrained(base, finished / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(finished / "adapter")
    ids = tokenizer("<|im_start|>user\nhello<|im_end|>\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert tuned(input_ids=ids).logits.shape[-1] == len(tokenizer)


def test_a_run_that_continues_a_model_starts_from_its_adapter(finished, models_dir, tmp_path):
    parent = state(finished)["evaluation"]
    weights = (finished / "adapter" / "adapter_model.safetensors").resolve().as_uri()
    spec = make_spec(
        EXAMPLES / "support-chats-v4.jsonl",
        total_steps=2,
        interval=2,
        hyperparameters=hyperparameters(learningRate=3e-2, loraRank=8, loraAlpha=16),
        initialAdapterUrl=weights,
    )
    child = tmp_path / "child"
    assert run(spec, child, models_dir) == 0
    logs = [e["message"] for e in events(child) if e["kind"] == "log"]
    assert "starting from the weights of the adapter it continues" in logs
    # Before its first step the child already scores what the parent ended with, not what
    # the base model (PEFT's initial adapter) scores.
    before = state(child)["initialValidationLoss"]
    assert parent["finalValidationLoss"] < parent["initialValidationLoss"]
    assert before == pytest.approx(parent["finalValidationLoss"], rel=1e-4)
    assert before != pytest.approx(parent["initialValidationLoss"], rel=1e-3)


def test_a_parent_adapter_of_another_shape_is_refused_with_its_code(finished, models_dir, tmp_path):
    weights = (finished / "adapter" / "adapter_model.safetensors").resolve().as_uri()
    spec = make_spec(
        EXAMPLES / "support-chats-v4.jsonl",
        total_steps=2,
        hyperparameters=hyperparameters(loraRank=4),
        initialAdapterUrl=weights,
    )
    assert run(spec, tmp_path, models_dir) == 1
    failed = state(tmp_path)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "INCOMPATIBLE_PARENT_ADAPTER"
    assert failed["error"]["retryable"] is False
