"""One training run: a BrightRun submission in, a PEFT LoRA adapter out, reports all along.

The run folder holds everything the run needs to go on after a preemption: the submission
(``spec.json``), the dataset it downloaded, the reports (``events.jsonl``, ``state.json``),
the checkpoints (adapter, optimizer, scheduler and RNG state, via transformers' Trainer) and,
at the end, ``adapter/`` with ``adapter_model.safetensors``, ``adapter_config.json`` and
``tokenizer.json``. A run started again in the same folder resumes from its last checkpoint;
so does a retried attempt, whose new folder the cluster adapter seeds with the failed run's
newest checkpoint (and a ``state.json`` naming that run).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import catalogue
from .encoding import Collator, encode_pair, ensure_chat_template
from .formats import parse_lines, split_pairs
from .reports import Reporter

ARTIFACTS = ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json")
SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd", "adafactor": "adafactor"}
MAX_LENGTH = 1024


class TrainerError(Exception):
    """A failure with a code the saga acts on; ``retryable`` says whether a retry can help."""

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass
class StopFlag:
    """Set by SIGTERM/SIGINT (Slurm's scancel and preemption) or by a ``cancel`` file."""

    run_dir: Path
    signalled: bool = False

    def install(self) -> None:
        def handler(_signum, _frame):
            self.signalled = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    @property
    def requested(self) -> bool:
        return self.signalled or (self.run_dir / "cancel").exists()


def download(
    url: str, target: Path, what: str = "dataset", code: str = "DATASET_UNAVAILABLE"
) -> int:
    """Streams a file (the dataset) from its presigned URL; the bytes it read."""
    if target.exists():
        return target.stat().st_size
    tmp = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except urllib.error.HTTPError as e:
        raise TrainerError(
            code,
            f"the {what} URL answered HTTP {e.code} ({e.reason})",
            retryable=e.code >= 500 or e.code == 429,
        ) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise TrainerError(code, f"the {what} could not be downloaded: {e}", retryable=True) from e
    os.replace(tmp, target)
    return target.stat().st_size


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def latest_checkpoint(folder: Path) -> Path | None:
    found = []
    for p in folder.glob("checkpoint-*"):
        if (p / "trainer_state.json").exists():
            try:
                found.append((int(p.name.split("-")[1]), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def start_from_parent(model, url: str, run_dir: Path, reporter) -> None:
    """A job that continues a model: its adapter's weights, in place of PEFT's initial ones
    (the service checked rank and modules; a mismatch is still refused here)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = run_dir / "initial_adapter.safetensors"
    download(url, weights, "parent model's adapter", "PARENT_ADAPTER_UNAVAILABLE")
    try:
        result = set_peft_model_state_dict(model, load_file(str(weights)))
    except (RuntimeError, ValueError) as e:
        raise TrainerError(
            "INCOMPATIBLE_PARENT_ADAPTER",
            f"the parent model's adapter does not fit this job's LoRA: {str(e).splitlines()[0]}",
        ) from e
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise TrainerError(
            "INCOMPATIBLE_PARENT_ADAPTER",
            "the parent model's adapter does not fit this job's LoRA "
            f"({len(missing)} weights missing, {len(result.unexpected_keys)} unexpected)",
        )
    reporter.log("info", "starting from the weights of the adapter it continues")


def keep_best_checkpoint(spec, model, run_dir: Path, callback, last_step: int, reporter) -> int:
    """With early stopping, the adapter becomes the best checkpoint's (the lowest validation
    loss evaluated) when that is not the last step's. Answers the step the adapter is from."""
    if not spec.get("earlyStoppingPatience") or callback.lowest is None:
        return last_step
    loss, step = callback.lowest
    weights = run_dir / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors"
    if step == last_step or not weights.exists():
        return last_step
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(weights)))
    reporter.log(
        "info",
        f"keeping the best checkpoint: step {step} (validation loss {loss:.4f}) "
        f"rather than step {last_step}",
    )
    return step


def check_target_modules(model, wanted: list[str]) -> None:
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in wanted if m not in present]
    if missing:
        linear = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in model.named_modules()
                if type(module).__name__ == "Linear"
            }
        )
        raise TrainerError(
            "INVALID_TARGET_MODULES",
            f"the base model has no module {', '.join(missing)}; its linear layers are "
            f"{', '.join(linear)}",
        )


def memory_mb(torch) -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except ImportError:  # pragma: no cover
        return 0.0


def run(spec: dict, run_dir: Path, models_root: Path | None = None) -> int:
    """Runs (or resumes) the submission ``spec`` in ``run_dir``; the process's exit code."""
    run_dir = Path(run_dir)
    reporter = Reporter(run_dir)
    stop = StopFlag(run_dir)
    stop.install()
    try:
        if reporter.state.get("status") == "completed":
            return 0  # started again after it finished (a requeue): nothing to do
        return _train(spec, run_dir, reporter, stop, models_root)
    except TrainerError as e:
        reporter.log("error", f"{e.code}: {e.message}")
        reporter.update(
            status="failed",
            error={"code": e.code, "message": e.message, "retryable": e.retryable},
        )
        return 1
    except catalogue.ModelUnavailable as e:
        reporter.log("error", f"{e.code}: {e.message}")
        reporter.update(
            status="failed", error={"code": e.code, "message": e.message, "retryable": False}
        )
        return 1
    except MemoryError:
        return _out_of_memory(reporter, "the host ran out of memory")
    except Exception as e:  # noqa: BLE001 - every failure must reach the saga with a code
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return _out_of_memory(reporter, str(e).splitlines()[0])
        reporter.log("error", f"TRAINER_ERROR: {type(e).__name__}: {e}")
        reporter.update(
            status="failed",
            error={
                "code": "TRAINER_ERROR",
                "message": f"{type(e).__name__}: {e}",
                "retryable": False,
            },
        )
        return 1
    finally:
        reporter.close()


def _out_of_memory(reporter: Reporter, detail: str) -> int:
    message = f"out of memory: {detail}; use a smaller batch size or more GPU memory"
    reporter.log("error", f"OUT_OF_MEMORY: {message}")
    reporter.update(
        status="failed",
        error={"code": "OUT_OF_MEMORY", "message": message, "retryable": False},
    )
    return 1


def _train(spec: dict, run_dir: Path, reporter: Reporter, stop: StopFlag, models_root) -> int:
    import torch

    threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    h = spec["hyperparameters"]
    total_steps = int(spec["totalSteps"])
    interval = max(1, int(spec.get("checkpointInterval") or total_steps))
    epochs = int(h["numEpochs"])
    resumed = reporter.state.get("starts", 1) > 1
    reporter.update(
        status="running",
        stage="initializing",
        totalSteps=total_steps,
        totalEpochs=epochs,
        step=reporter.state.get("step", 0),
        epoch=reporter.state.get("epoch", 0),
        error=None,
    )
    reporter.log("info", "resuming the run" if resumed else "starting the run")
    if not resumed and reporter.state.get("resumedFrom"):
        # A retried attempt: the cluster adapter put the failed run's newest checkpoint here.
        reporter.log("info", f"retrying the failed run {reporter.state['resumedFrom']}")

    data = run_dir / "dataset.jsonl"
    size = download(spec["datasetUrl"], data)
    reporter.update(datasetBytes=size)
    with open(data, encoding="utf-8", errors="replace") as f:
        train_pairs, val_pairs = split_pairs(
            parse_lines(f, spec.get("datasetFormat")), float(spec.get("validationSplitRatio", 0.1))
        )
    if not train_pairs:
        raise TrainerError(
            "NO_TRAINABLE_TURNS",
            "the dataset has no training pair (a user turn followed by an assistant turn) "
            "in its training split",
        )
    reporter.log(
        "info",
        f"dataset: {size} bytes, {len(train_pairs)} training pairs, "
        f"{len(val_pairs)} validation pairs",
    )

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    started = time.monotonic()
    model, tokenizer, origin = catalogue.load(spec["baseModel"], models_root, dtype=dtype)
    reporter.log(
        "info",
        f"base model {spec['baseModel']} from {origin} "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"loaded in {time.monotonic() - started:.1f} s, on {'cuda' if cuda else 'cpu'})",
    )
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    check_target_modules(model, list(h["targetModules"]))

    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model,
        LoraConfig(
            r=int(h["loraRank"]),
            lora_alpha=int(h["loraAlpha"]),
            lora_dropout=float(h["loraDropout"]),
            target_modules=list(h["targetModules"]),
            task_type="CAUSAL_LM",
        ),
    )
    if spec.get("initialAdapterUrl"):
        start_from_parent(model, spec["initialAdapterUrl"], run_dir, reporter)
    max_length = min(MAX_LENGTH, getattr(tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH)

    def encode(pairs):
        rows = []
        for p in pairs:
            e = encode_pair(tokenizer, p, max_length)
            if e.trained_tokens:
                rows.append({"input_ids": e.input_ids, "labels": e.labels})
        return rows

    train_rows, val_rows = encode(train_pairs), encode(val_pairs)
    if not train_rows:
        raise TrainerError("NO_TRAINABLE_TURNS", "no training pair has an answer to train on")

    from .loop import build_trainer

    trainer, callback = build_trainer(
        model=model,
        tokenizer=tokenizer,
        train_rows=train_rows,
        val_rows=val_rows,
        spec=spec,
        run_dir=run_dir,
        reporter=reporter,
        stop=stop,
        total_steps=total_steps,
        interval=interval,
        cuda=cuda,
        collator=Collator(tokenizer.pad_token_id),
    )
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None and val_rows and "initialValidationLoss" not in reporter.state:
        reporter.update(stage="validating")
        initial = trainer.evaluate()["eval_loss"]
        reporter.update(initialValidationLoss=initial)
        reporter.log("info", f"validation loss before training: {initial:.4f}")
    if checkpoint is not None:
        reporter.log("info", f"resuming from {checkpoint.name} (step {checkpoint.name[11:]})")
    reporter.update(stage="training")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    callback.flush()

    if stop.requested:
        reporter.log("warning", f"stopped at step {trainer.state.global_step} on request")
        reporter.update(status="cancelled", step=trainer.state.global_step)
        return 0

    kept = keep_best_checkpoint(spec, model, run_dir, callback, trainer.state.global_step, reporter)
    reporter.update(stage="validating")
    history = callback.validation_losses
    final_train = callback.last_training_loss
    if val_rows:
        final_val = trainer.evaluate()["eval_loss"]
    else:
        reporter.log("warning", "no validation pairs: validation figures use the training loss")
        final_val = final_train
    initial_val = reporter.state.get("initialValidationLoss", final_val)
    best_val = min([final_val, *history])

    reporter.update(stage="saving")
    out = run_dir / "adapter"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    artifacts = []
    for name in ARTIFACTS:
        path = out / name
        if path.exists():
            artifacts.append(
                {
                    "name": name,
                    "path": str(path),
                    "sizeBytes": path.stat().st_size,
                    "sha256": sha256_of(path),
                }
            )
    evaluation = {
        "initialValidationLoss": initial_val,
        "finalTrainingLoss": final_train,
        "finalValidationLoss": final_val,
        "bestValidationLoss": best_val,
        "perplexity": math.exp(min(final_val, 50.0)),
        "adapterStep": kept,
    }
    if val_rows:
        from .evaluate import compare

        reporter.update(stage="validating")
        started = time.monotonic()
        comparison = compare(model, tokenizer, val_pairs, val_rows)
        evaluation["comparison"] = comparison
        b, a = comparison["base"], comparison["adapter"]
        reporter.log(
            "info",
            f"base vs adapter on {comparison['validationPairs']} validation pairs: "
            f"loss {b['loss']:.4f} -> {a['loss']:.4f}, BLEU {b['bleu']:.2f} -> {a['bleu']:.2f}, "
            f"ROUGE-L {b['rougeL']:.2f} -> {a['rougeL']:.2f} "
            f"({time.monotonic() - started:.1f} s)",
        )
    reporter.log(
        "info",
        f"done: validation loss {initial_val:.4f} -> {final_val:.4f}, "
        f"adapter {sum(a['sizeBytes'] for a in artifacts)} bytes",
    )
    reporter.update(
        status="completed",
        stage="completed",
        step=trainer.state.global_step,
        artifacts=artifacts,
        evaluation=evaluation,
    )
    return 0
