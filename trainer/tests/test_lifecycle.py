"""Preemption, cancel, out-of-memory and bad input, with the trainer as its own process (as a
cluster runs it)."""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, events, make_spec, state

from brightrun_trainer.train import run

SRC = Path(__file__).resolve().parents[1] / "src"


def start(run_dir: Path, spec: dict, models_dir: Path, faults: dict | None = None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "TRAINER_MODELS_DIR": str(models_dir),
        "BRIGHTRUN_TRAINER_FAULTS": json.dumps(faults or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "brightrun_trainer", str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def metric_steps(evs):
    return [e["step"] for e in evs if e["kind"] == "metric"]


def test_a_preempted_run_resumes_from_its_last_checkpoint(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", total_steps=8, interval=2)
    first = start(tmp_path, spec, models_dir, {"stepSeconds": 0.4})
    # Killed (like a preempted node) once checkpoint 4 is on disk and step 5 has begun.
    wait_for(lambda: 5 in metric_steps(events(tmp_path)))
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = events(tmp_path)
    assert state(tmp_path)["status"] == "running"
    saved = [e["step"] for e in before if e["kind"] == "checkpoint"]
    assert saved and saved[-1] >= 4

    second = start(tmp_path, spec, models_dir)
    assert second.wait(timeout=120) == 0, second.stderr.read().decode()
    s = state(tmp_path)
    assert s["status"] == "completed" and s["step"] == 8 and s["starts"] == 2
    after = events(tmp_path)[len(before) :]
    logs = [e["message"] for e in after if e["kind"] == "log"]
    resumed = [m for m in logs if m.startswith("resuming from checkpoint-")]
    assert len(resumed) == 1, logs
    # From the newest checkpoint on disk when it was killed (at least the last one reported).
    step = int(resumed[0].split("(step ")[1].rstrip(")"))
    assert step >= saved[-1] and step % 2 == 0
    # The second process trains the steps after it only: it did not start again from step 0.
    assert metric_steps(after) == list(range(step + 1, 9))
    # Sequence numbers and log indexes carry on across the restart.
    every = events(tmp_path)
    assert [e["seq"] for e in every] == list(range(1, len(every) + 1))
    indexes = [e["index"] for e in every if e["kind"] == "log"]
    assert indexes == list(range(len(indexes)))


def test_sigterm_cancels_the_run(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", total_steps=40, interval=10)
    p = start(tmp_path, spec, models_dir, {"stepSeconds": 0.3})
    wait_for(lambda: 2 in metric_steps(events(tmp_path)))
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0
    s = state(tmp_path)
    assert s["status"] == "cancelled"
    assert s["step"] < 40
    assert not (tmp_path / "adapter").exists()


def test_a_cancel_file_stops_the_run(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", total_steps=40, interval=10)
    (tmp_path / "cancel").touch()
    assert run(spec, tmp_path, models_dir) == 0
    assert state(tmp_path)["status"] == "cancelled"


def test_out_of_memory_is_reported_and_not_retryable(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", total_steps=6, interval=2)
    p = start(tmp_path, spec, models_dir, {"oomAtStep": 3})
    assert p.wait(timeout=120) == 1
    s = state(tmp_path)
    assert s["status"] == "failed"
    assert s["error"]["code"] == "OUT_OF_MEMORY"
    assert s["error"]["retryable"] is False
    assert "batch size" in s["error"]["message"]


def failure(spec, run_dir, models_dir) -> dict:
    assert run(spec, run_dir, models_dir) == 1
    s = state(run_dir)
    assert s["status"] == "failed"
    return s["error"]


def test_an_unknown_base_model(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", baseModel="gpt-9")
    error = failure(spec, tmp_path, models_dir)
    assert error["code"] == "UNKNOWN_BASE_MODEL" and error["retryable"] is False


def test_a_base_model_that_is_not_on_this_machine(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", baseModel="llama-3-8b")
    error = failure(spec, tmp_path, models_dir)
    assert error["code"] == "BASE_MODEL_UNAVAILABLE" and error["retryable"] is False
    assert "Meta-Llama-3-8B" in error["message"]


def test_a_target_module_the_model_lacks(models_dir, tmp_path):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl")
    spec["hyperparameters"]["targetModules"] = ["q_proj", "c_attn"]
    error = failure(spec, tmp_path, models_dir)
    assert error["code"] == "INVALID_TARGET_MODULES" and error["retryable"] is False
    assert "c_attn" in error["message"] and "q_proj" in error["message"]


def test_a_dataset_with_no_trainable_turn(models_dir, tmp_path):
    data = tmp_path / "questions.jsonl"
    data.write_text(
        json.dumps({"conversation_id": "q", "turns": [{"role": "user", "content": "hi"}]}) + "\n"
    )
    error = failure(make_spec(data), tmp_path / "run", models_dir)
    assert error["code"] == "NO_TRAINABLE_TURNS" and error["retryable"] is False


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            code = int(self.path.strip("/"))
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_dataset_url_that_fails(models_dir, tmp_path, http_server):
    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", datasetUrl=f"{http_server}/403")
    error = failure(spec, tmp_path / "a", models_dir)
    assert error["code"] == "DATASET_UNAVAILABLE" and error["retryable"] is False
    assert "403" in error["message"]
    spec["datasetUrl"] = f"{http_server}/503"
    error = failure(spec, tmp_path / "b", models_dir)
    assert error["code"] == "DATASET_UNAVAILABLE" and error["retryable"] is True


def test_early_stopping_keeps_the_adapter_of_the_lowest_validation_loss(models_dir, tmp_path):
    from safetensors.torch import load_file

    spec = make_spec(
        EXAMPLES / "support-chats-v4.jsonl",
        total_steps=6,
        interval=1,
        earlyStoppingPatience=2,
        earlyStoppingMinDelta=0.5,
    )
    assert run(spec, tmp_path, models_dir) == 0
    done = state(tmp_path)
    logs = [e["message"] for e in events(tmp_path) if e["kind"] == "log"]
    # No evaluation improves on the first by 0.5: the run stops two evaluations later.
    assert any(m.startswith("early stopping at step 3: ") for m in logs), logs
    losses = {
        e["step"]: e["validationLoss"]
        for e in events(tmp_path)
        if e["kind"] == "metric" and e.get("validationLoss") is not None
    }
    assert sorted(losses) == [1, 2, 3]
    best = min(losses, key=losses.get)
    kept = done["evaluation"]["adapterStep"]
    assert kept == best
    # The adapter is that checkpoint's, and the final evaluation is of it.
    final = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    checkpoint = load_file(
        str(tmp_path / "checkpoints" / f"checkpoint-{kept}" / "adapter_model.safetensors")
    )
    assert final.keys() == checkpoint.keys()
    assert all((final[k] == checkpoint[k]).all() for k in final)
    assert done["evaluation"]["finalValidationLoss"] == pytest.approx(losses[kept], abs=1e-4)


def test_keeping_the_best_checkpoint_loads_its_weights_into_the_model(models_dir, tmp_path):
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from brightrun_trainer import catalogue
    from brightrun_trainer.reports import Reporter
    from brightrun_trainer.train import keep_best_checkpoint

    spec = make_spec(EXAMPLES / "support-chats-v4.jsonl", total_steps=3, interval=1)
    assert run(spec, tmp_path, models_dir) == 0
    base = AutoModelForCausalLM.from_pretrained(
        catalogue.snapshot(models_dir, catalogue.CATALOGUE["tiny-random"].repo)
    )
    model = PeftModel.from_pretrained(base, tmp_path / "adapter", is_trainable=True)

    class Lowest:
        lowest = (0.1, 1)

    reporter = Reporter(tmp_path)
    try:
        # Without early stopping the last step's adapter stays.
        assert keep_best_checkpoint(spec, model, tmp_path, Lowest(), 3, reporter) == 3
        spec["earlyStoppingPatience"] = 2
        assert keep_best_checkpoint(spec, model, tmp_path, Lowest(), 3, reporter) == 1
    finally:
        reporter.close()
    wanted = load_file(str(tmp_path / "checkpoints/checkpoint-1/adapter_model.safetensors"))
    now = get_peft_model_state_dict(model)
    assert wanted.keys() == now.keys()
    assert all(torch.equal(wanted[k], now[k]) for k in wanted)
    last = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any(not torch.equal(wanted[k], last[k]) for k in wanted), "steps 1 and 3 differ"
