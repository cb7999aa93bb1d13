"""A script written for OpenAI's fine-tuning API, run unchanged against BrightRun but for
`base_url` and `api_key`: files in each format, jobs created with `method` and with
`hyperparameters`, the job list paged, events and checkpoints read, a job that succeeds and
its model, a job cancelled; the same jobs seen through /api."""

import openai
import pytest

from conftest import EXAMPLES, wait_for

FORMATS = {
    "support-chats-openai.jsonl": "openai-chat",
    "support-chats-sharegpt.jsonl": "sharegpt",
    "support-faq-alpaca.jsonl": "alpaca",
}


def upload(client: openai.OpenAI, name: str):
    with open(EXAMPLES / name, "rb") as f:
        created = client.files.create(file=f, purpose="fine-tune")
    assert created.id.startswith("file-")
    assert created.filename == name
    assert created.bytes == (EXAMPLES / name).stat().st_size
    return wait_for(
        f"{name} validated",
        lambda: client.files.retrieve(created.id),
        lambda f: f.status in ("processed", "error"),
    )


def test_a_fine_tuning_script_runs_unchanged(account):
    ada = account("ada")
    key, _ = ada.new_key("notebook")
    client = ada.client(key)

    files = {}
    for name, fmt in FORMATS.items():
        file = upload(client, name)
        assert file.status == "processed", file
        assert file.model_extra["format"] == fmt
        files[fmt] = file
        assert client.files.content(file.id).content == (EXAMPLES / name).read_bytes()
    listed = [f.id for f in client.files.list()]
    assert listed == [f.id for f in reversed(files.values())], "newest first"
    assert [f.id for f in client.files.list(order="asc")] == [f.id for f in files.values()]
    assert [f.id for f in client.files.list(limit=1)] == listed, "auto-paging follows after"

    done = client.fine_tuning.jobs.create(
        model="llama-3-8b",
        training_file=files["openai-chat"].id,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": 2,
                    "batch_size": "auto",
                    "learning_rate_multiplier": 0.5,
                }
            },
        },
        suffix="support-bot",
        seed=7,
        metadata={"team": "support"},
    )
    assert done.id.startswith("ftjob-")
    assert done.status == "queued"
    assert done.model == "llama-3-8b"
    assert done.training_file == files["openai-chat"].id
    assert done.hyperparameters.n_epochs == 2
    assert done.hyperparameters.batch_size == 8, "auto: the balanced preset's"
    assert done.hyperparameters.learning_rate_multiplier == 0.5
    assert done.method.type == "supervised"
    assert done.seed == 7
    assert done.user_provided_suffix == "support-bot"
    assert done.metadata == {"team": "support"}

    legacy = client.fine_tuning.jobs.create(
        model="mistral-7b",
        training_file=files["sharegpt"].id,
        hyperparameters={"n_epochs": 1},
        metadata={"gpu_type": "h100-80gb", "gpu_count": "2", "preset": "conservative"},
    )
    assert legacy.hyperparameters.n_epochs == 1
    assert legacy.hyperparameters.batch_size == 4, "the conservative preset's"
    assert legacy.model_extra["brightrun"]["gpu_config"] == {
        "instanceType": "h100-80gb",
        "numGPUs": 2,
    }
    cancelled = client.fine_tuning.jobs.cancel(legacy.id)
    assert cancelled.status == "cancelled"

    third = client.fine_tuning.jobs.create(model="llama-3-8b", training_file=files["alpaca"].id)

    # Newest first, a page at a time.
    first = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == [third.id, legacy.id]
    assert first.has_more
    rest = client.fine_tuning.jobs.list(limit=2, after=legacy.id)
    assert [j.id for j in rest.data] == [done.id]
    assert not rest.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == [
        third.id,
        legacy.id,
        done.id,
    ], "the SDK's auto-paging follows after"

    tagged = client.fine_tuning.jobs.list(metadata={"team": "support"})
    assert [j.id for j in tagged] == [done.id], "metadata[team]=support"

    finished = wait_for(
        "the job to succeed",
        lambda: client.fine_tuning.jobs.retrieve(done.id),
        lambda j: j.status in ("succeeded", "failed", "cancelled"),
        seconds=180,
    )
    assert finished.status == "succeeded", finished
    assert finished.finished_at >= finished.created_at
    assert finished.fine_tuned_model.startswith("ft:llama-3-8b:support-bot:")

    events = client.fine_tuning.jobs.list_events(done.id, limit=100).data
    assert events[0].message == "The job has successfully completed"
    assert events[-1].message == "Created fine-tuning job"
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    page = client.fine_tuning.jobs.list_events(done.id, limit=2)
    after = client.fine_tuning.jobs.list_events(done.id, limit=2, after=page.data[-1].id)
    assert [e.id for e in page.data + after.data] == [e.id for e in events[:4]]

    checkpoints = client.fine_tuning.jobs.checkpoints.list(done.id, limit=100).data
    assert checkpoints, "checkpoints were saved"
    steps = [c.step_number for c in checkpoints]
    assert steps == sorted(steps, reverse=True)
    for c in checkpoints:
        assert c.fine_tuning_job_id == done.id
        assert c.metrics.step == c.step_number
        assert c.metrics.train_loss > 0

    models = [m.id for m in client.models.list()]
    assert finished.fine_tuned_model in models
    assert "llama-3-8b" in models
    model = client.models.retrieve(finished.fine_tuned_model)
    assert model.owned_by.startswith("user-")

    # The same jobs, through /api.
    ours = {j["id"] for j in ada.api("GET", "/api/jobs", params={"pageSize": 100})["jobs"]}
    assert ours == {j.id.removeprefix("ftjob-") for j in (done, legacy, third)}

    deleted = client.models.delete(finished.fine_tuned_model)
    assert deleted.deleted
    assert finished.fine_tuned_model not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(finished.fine_tuned_model)
