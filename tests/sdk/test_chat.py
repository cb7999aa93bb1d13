"""The fine-tuned model answers the official SDK's `chat.completions.create`, whole and
streamed, once it is deployed (on the CPU engine, llama.cpp); its tokens land in the owner's
costs; another user's key is refused; undeployed, it answers no more."""

import openai
import pytest

from conftest import EXAMPLES, wait_for


def test_a_deployed_model_chats_through_the_sdk(account):
    ada, bob = account("ada"), account("bob")
    client = ada.client(ada.new_key()[0])
    with open(EXAMPLES / "support-chats-openai.jsonl", "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    wait_for("validation", lambda: client.files.retrieve(file.id), lambda f: f.status != "uploaded")
    job = client.fine_tuning.jobs.create(
        model="smollm2-135m", training_file=file.id, suffix="helpdesk"
    )
    job = wait_for(
        "training",
        lambda: client.fine_tuning.jobs.retrieve(job.id),
        lambda j: j.status in ("succeeded", "failed", "cancelled"),
        seconds=300,
    )
    assert job.status == "succeeded", job
    name = job.fine_tuned_model
    model_id = name.rsplit(":", 1)[1]

    # Not deployed yet: a clear refusal, not a base model's answer.
    ask = {"model": name, "messages": [{"role": "user", "content": "My order is late"}]}
    with pytest.raises(openai.ConflictError) as refused:
        client.chat.completions.create(**ask, max_tokens=4)
    assert refused.value.code == "model_not_deployed"

    started = ada.api("POST", f"/api/models/{model_id}/deploy", json={"environment": "staging"})
    assert started["status"] == "deploying"
    wait_for(
        "the engine",
        lambda: ada.api("GET", f"/api/models/{model_id}")["model"]["deployment"],
        lambda d: d["status"] in ("deployed", "failed"),
        seconds=240,
    )
    assert ada.api("GET", f"/api/models/{model_id}")["model"]["deployment"]["status"] == "deployed"

    whole = client.chat.completions.create(**ask, max_tokens=8, temperature=0)
    assert whole.model == name
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content
    assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 0

    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        **ask, max_tokens=8, stream=True, stream_options={"include_usage": True}
    ):
        assert chunk.model == name
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert pieces, "the stream carried text"
    assert usage is not None and usage.completion_tokens == len(pieces)

    # Another user's key finds no such model.
    with pytest.raises(openai.NotFoundError):
        bob.client(bob.new_key()[0]).chat.completions.create(**ask, max_tokens=4)

    costs = wait_for(
        "the ledger",
        lambda: ada.api("GET", "/api/costs", params={"groupBy": "month"}),
        lambda c: c["costs"] and c["costs"][-1]["apiCalls"] > 0,
    )
    assert costs["costs"][-1]["apiCalls"] > 0

    ada.api("POST", f"/api/models/{model_id}/undeploy", json={})
    with pytest.raises(openai.ConflictError) as refused:
        client.chat.completions.create(**ask, max_tokens=4)
    assert refused.value.code == "model_not_deployed"
