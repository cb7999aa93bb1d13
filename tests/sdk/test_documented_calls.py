"""The calls exactly as OpenAI's fine-tuning guide shows them: upload a file, then create a
job with only `training_file` and `model` (and once with `hyperparameters={"n_epochs": 2}`),
right after the upload, while the file may still be validating. They must succeed on every
base model of the default catalogue."""

from conftest import EXAMPLES, wait_for


def catalogue_models(user) -> list[str]:
    return [m["id"] for m in user.api("GET", "/api/jobs/presets")["baseModels"]]


def test_a_plain_create_succeeds_on_every_base_model_of_the_catalogue(account):
    user = account("plain")
    models = catalogue_models(user)
    assert len(models) >= 4
    key, _ = user.new_key()
    client = user.client(key)
    for model in models:
        # As the guide has it: the file is uploaded, and the job created at once.
        file = client.files.create(
            file=open(EXAMPLES / "support-chats-openai.jsonl", "rb"),
            purpose="fine-tune",
        )
        job = client.fine_tuning.jobs.create(training_file=file.id, model=model)
        assert job.model == model
        assert job.training_file == file.id
        assert job.status in ("validating_files", "queued", "running"), job
        done = wait_for(
            f"the {model} job",
            lambda job_id=job.id: client.fine_tuning.jobs.retrieve(job_id),
            lambda j: j.status in ("succeeded", "failed", "cancelled"),
        )
        assert done.status == "succeeded", done
        assert done.fine_tuned_model.startswith(f"ft:{model}:"), done


def test_a_create_with_only_n_epochs_takes_it(account):
    user = account("epochs")
    models = catalogue_models(user)
    key, _ = user.new_key()
    client = user.client(key)
    file = client.files.create(
        file=open(EXAMPLES / "support-chats-openai.jsonl", "rb"),
        purpose="fine-tune",
    )
    job = client.fine_tuning.jobs.create(
        training_file=file.id,
        model=models[0],
        hyperparameters={"n_epochs": 2},
    )
    assert job.hyperparameters.n_epochs == 2
    done = wait_for(
        "the job",
        lambda: client.fine_tuning.jobs.retrieve(job.id),
        lambda j: j.status in ("succeeded", "failed", "cancelled"),
    )
    assert done.status == "succeeded", done
    assert done.hyperparameters.n_epochs == 2
