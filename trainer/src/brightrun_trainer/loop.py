"""The training loop: transformers' Trainer over the PEFT model, with a callback that reports
metric points, checkpoints and progress, stops on cancel, and applies early stopping."""

from __future__ import annotations

import json
import math
import os
import time

from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from .train import OPTIMIZERS, SCHEDULERS, memory_mb, sha256_of

ADAPTER_MODEL = "adapter_model.safetensors"


class ListDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class CountingTrainer(Trainer):
    """Counts the tokens each training micro-batch feeds the model (for tokens/s): counted
    where the model sees them, since the data loader fetches batches ahead."""

    tokens = 0

    def training_step(self, model, inputs, *args, **kwargs):
        self.tokens += int(inputs["attention_mask"].sum())
        return super().training_step(model, inputs, *args, **kwargs)


class Reports(TrainerCallback):
    """Turns the Trainer's steps, logs, evaluations and saves into BrightRun reports.

    The Trainer calls, per optimiser step: ``on_step_end``, then ``on_log`` (loss, grad norm,
    learning rate), then ``on_evaluate`` and ``on_save`` at checkpoint steps. A step's metric
    point is written once it is whole: at the next step, at a save, or at the end."""

    def __init__(self, reporter, stop, torch, epochs, patience, total_steps, min_delta=None):
        self.reporter = reporter
        self.stop = stop
        self.counter = None  # the trainer, once built
        self.torch = torch
        self.epochs = epochs
        self.patience = patience
        # An evaluation improves on the best only by more than this.
        self.min_delta = float(min_delta or 0.0)
        # The step of the lowest validation loss this run evaluated, and that loss.
        self.lowest: tuple[float, int] | None = None
        self.total_steps = total_steps
        self.pending: dict | None = None
        # Where the last step's work ended (after its evaluation and save): the next step's
        # time and tokens are counted from there (the Trainer fetches batches before
        # on_step_begin).
        self.mark = time.monotonic()
        self.tokens_at_mark = 0
        self.throughput = 0.0
        self.validation_losses: list[float] = []
        self.last_training_loss = math.nan
        self.best = math.inf
        self.bad_evaluations = 0
        self.run_started = time.monotonic()
        self.first_step: int | None = None
        # Faults for the trainer's own tests (BRIGHTRUN_TRAINER_FAULTS, JSON):
        # {"stepSeconds": s} makes each step last at least s; {"oomAtStep": n} raises CUDA's
        # out-of-memory error at step n.
        self.faults = json.loads(os.environ.get("BRIGHTRUN_TRAINER_FAULTS") or "{}")

    def epoch_of(self, state) -> int:
        return max(1, min(self.epochs, math.floor(state.epoch or 0) + 1))

    def flush(self) -> None:
        if self.pending is not None:
            self.reporter.metric(**self.pending)
            self.pending = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step
        self.run_started = self.mark = time.monotonic()

    def _mark(self) -> None:
        self.mark = time.monotonic()
        self.tokens_at_mark = self.counter.tokens

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.faults.get("oomAtStep"):
            raise self.torch.OutOfMemoryError("CUDA out of memory (injected fault)")
        pause = self.faults.get("stepSeconds", 0) - (time.monotonic() - self.mark)
        if pause > 0:
            time.sleep(pause)
        self.flush()
        seconds = max(time.monotonic() - self.mark, 1e-9)
        self.throughput = (self.counter.tokens - self.tokens_at_mark) / seconds
        done = state.global_step - (self.first_step or 0)
        elapsed = time.monotonic() - self.run_started
        eta = elapsed / max(done, 1) * (self.total_steps - state.global_step)
        self.reporter.update(
            step=state.global_step,
            epoch=self.epoch_of(state),
            etaSeconds=max(0, int(eta)),
            stage="training",
        )
        if self.stop.requested:
            control.should_training_stop = True
        self._mark()
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.last_training_loss = float(logs["loss"])
            self.pending = {
                "step": state.global_step,
                "epoch": self.epoch_of(state),
                "trainingLoss": float(logs["loss"]),
                "learningRate": float(logs.get("learning_rate", 0.0)),
                "gradientNorm": float(logs.get("grad_norm", 0.0) or 0.0),
                "throughput": round(self.throughput, 2),
                "gpuUtilization": 0.0,
                "memoryMb": memory_mb(self.torch),
            }

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._mark()
        loss = (metrics or {}).get("eval_loss")
        if loss is None or state.global_step == 0:
            return
        loss = float(loss)
        self.validation_losses.append(loss)
        if self.pending is not None and self.pending["step"] == state.global_step:
            self.pending["validationLoss"] = loss
        if self.lowest is None or loss < self.lowest[0]:
            self.lowest = (loss, state.global_step)
        if loss < self.best - max(self.min_delta, 1e-6):
            self.best = loss
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
            if self.patience and self.bad_evaluations >= self.patience:
                self.reporter.log(
                    "warning",
                    f"early stopping at step {state.global_step}: validation loss has not "
                    f"improved by more than {self.min_delta:g} for {self.bad_evaluations} "
                    "evaluations",
                )
                control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        loss = self.pending.get("validationLoss") if self.pending else None
        if loss is None:
            loss = self.last_training_loss
        self.flush()
        folder = f"checkpoints/checkpoint-{state.global_step}"
        checkpoint = {
            "id": f"ckpt-{state.global_step}",
            "step": state.global_step,
            "epoch": self.epoch_of(state),
            "loss": loss,
            "path": folder,
        }
        # The Trainer has written the checkpoint's adapter by now: offer it to be copied.
        adapter = self.reporter.run_dir / folder / ADAPTER_MODEL
        if adapter.exists():
            checkpoint["adapter"] = {
                "name": ADAPTER_MODEL,
                "path": str(adapter),
                "sizeBytes": adapter.stat().st_size,
                "sha256": sha256_of(adapter),
            }
        self.reporter.checkpoint(**checkpoint)
        self.reporter.log(
            "info",
            f"checkpoint at step {state.global_step} (loss {loss:.4f}, "
            f"memory {memory_mb(self.torch)} MB)",
        )
        self._mark()


def build_trainer(
    *,
    model,
    tokenizer,
    train_rows,
    val_rows,
    spec,
    run_dir,
    reporter,
    stop,
    total_steps,
    interval,
    cuda,
    collator,
):
    import torch

    h = spec["hyperparameters"]
    evaluate = bool(val_rows)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        max_steps=total_steps,
        num_train_epochs=int(h["numEpochs"]),
        per_device_train_batch_size=int(h["batchSize"]),
        per_device_eval_batch_size=int(h["batchSize"]),
        gradient_accumulation_steps=int(h["gradientAccumulationSteps"]),
        learning_rate=float(h["learningRate"]),
        weight_decay=float(h["weightDecay"]),
        max_grad_norm=float(h["maxGradNorm"]),
        lr_scheduler_type=SCHEDULERS[h["scheduler"]],
        warmup_steps=int(h["warmupSteps"]),
        optim=OPTIMIZERS[h["optimizerType"]],
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        save_steps=interval,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=interval if evaluate else None,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=int(spec.get("seed", 42)),
        log_level="warning",
    )
    callback = Reports(
        reporter,
        stop,
        torch,
        epochs=int(h["numEpochs"]),
        patience=spec.get("earlyStoppingPatience"),
        min_delta=spec.get("earlyStoppingMinDelta"),
        total_steps=total_steps,
    )
    trainer = CountingTrainer(
        model=model,
        args=args,
        train_dataset=ListDataset(train_rows),
        eval_dataset=ListDataset(val_rows) if evaluate else None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    callback.counter = trainer
    trainer.remove_callback(PrinterCallback)
    return trainer, callback
