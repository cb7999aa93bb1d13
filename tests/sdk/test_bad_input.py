"""Bad input answers OpenAI's error shape, naming the parameter, and creates nothing; keys are
per user and a revoked key stops at once."""

import openai
import pytest

from conftest import EXAMPLES, wait_for


def ready_file(client):
    with open(EXAMPLES / "support-chats-openai.jsonl", "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    return wait_for(
        "validation", lambda: client.files.retrieve(file.id), lambda f: f.status != "uploaded"
    )


def refused(call, error=openai.BadRequestError):
    with pytest.raises(error) as raised:
        call()
    return raised.value


def test_bad_requests_name_their_parameter_and_create_nothing(account):
    ada, bob = account("ada"), account("bob")
    client = ada.client(ada.new_key()[0])
    file = ready_file(client)
    bobs = ready_file(bob.client(bob.new_key()[0]))
    with open(EXAMPLES / "invalid-v4.jsonl", "rb") as f:
        invalid = client.files.create(file=f, purpose="fine-tune")
    invalid = wait_for(
        "validation", lambda: client.files.retrieve(invalid.id), lambda f: f.status != "uploaded"
    )
    assert invalid.status == "error"
    assert invalid.status_details

    # A file not validated yet: registered through /api, its bytes never sent.
    registered = ada.api(
        "POST",
        "/api/datasets",
        json={"name": "Pending", "format": "openai-chat", "fileName": "p.jsonl", "fileSize": 10},
    )
    pending = f"file-{registered['datasetId']}"
    assert client.files.retrieve(pending).status == "uploaded"

    def create(**overrides):
        body = {"model": "llama-3-8b", "training_file": file.id} | overrides
        return lambda: client.fine_tuning.jobs.create(**body)

    # A file that does not exist, or is another user's, is not found (as in /api).
    for missing in ("file-00000000-0000-0000-0000-000000000000", bobs.id):
        error = refused(create(training_file=missing), openai.NotFoundError)
        assert error.param == "training_file", error.body
    cases = [
        (create(training_file=invalid.id), "training_file"),
        (create(training_file=pending), "training_file"),
        (create(model="gpt-4o-mini"), "model"),
        (create(hyperparameters={"n_epochs": 1000}), "hyperparameters.n_epochs"),
        (
            create(
                method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 0}}}
            ),
            "method.supervised.hyperparameters.batch_size",
        ),
        (create(method={"type": "dpo"}), "method.type"),
        (create(suffix="no:colons"), "suffix"),
        (create(seed=-1), "seed"),
        (create(metadata={"gpu_type": "tpu"}), "metadata.gpu_type"),
        (create(validation_file=file.id), "validation_file"),
    ]
    for call, param in cases:
        error = refused(call)
        assert error.param == param, (param, error.body)
        assert error.type == "invalid_request_error"
        assert error.message
    assert client.fine_tuning.jobs.list().data == []

    error = refused(lambda: client.files.create(file=b"not json\n", purpose="fine-tune"))
    assert error.param == "file"
    error = refused(
        lambda: client.files.create(
            file=(EXAMPLES / "support-faq-alpaca.jsonl").read_bytes(), purpose="batch"
        )
    )
    assert error.param == "purpose"
    assert sorted(f.id for f in client.files.list()) == sorted([file.id, invalid.id, pending])
    assert client.files.delete(invalid.id).deleted
    assert client.files.delete(pending).deleted
    assert [f.id for f in client.files.list()] == [file.id]
    refused(lambda: client.files.retrieve(invalid.id), openai.NotFoundError)

    refused(lambda: client.fine_tuning.jobs.retrieve("ftjob-nope"), openai.NotFoundError)
    refused(lambda: client.files.retrieve(bobs.id), openai.NotFoundError)
    refused(lambda: client.models.delete("llama-3-8b"), openai.PermissionDeniedError)


def test_a_key_acts_as_its_user_and_stops_when_revoked(account):
    ada, bob = account("ada"), account("bob")
    key, key_id = ada.new_key()
    client = ada.client(key)
    file = ready_file(client)
    job = client.fine_tuning.jobs.create(model="llama-3-8b", training_file=file.id)

    bob_client = bob.client(bob.new_key()[0])
    assert bob_client.files.list().data == []
    assert bob_client.fine_tuning.jobs.list().data == []
    refused(lambda: bob_client.fine_tuning.jobs.retrieve(job.id), openai.NotFoundError)
    refused(lambda: bob_client.fine_tuning.jobs.cancel(job.id), openai.NotFoundError)
    assert not [m for m in bob_client.models.list() if m.id.startswith("ft:")]

    ada.api("DELETE", f"/api/auth/api-keys/{key_id}")
    error = refused(lambda: client.files.list(), openai.AuthenticationError)
    assert error.code == "invalid_api_key"
    refused(
        lambda: openai.OpenAI(
            base_url=client.base_url, api_key="brk_forged", max_retries=0
        ).models.list(),
        openai.AuthenticationError,
    )
