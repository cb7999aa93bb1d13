"""Benchmark: chat completions through BrightRun (`/v1`, the proxy) against the same engine
called directly, same prompts, alternating, on a model trained and deployed here; and the
time from the deploy request to the first streamed token. Run by scripts/bench-chat.sh
(a private serve on the CPU engine); prints one JSON object."""

import json
import os
import statistics
import sys
import time
from pathlib import Path

from openai import OpenAI

from conftest import EXAMPLES, Account, wait_for

ROUNDS = int(os.environ.get("ROUNDS", "20"))
PROMPTS = [
    "How do I reset my password?",
    "My order is late, what can I do?",
    "Can I change the e-mail address of my account?",
    "Where do I find my invoices?",
]


def timed(client: OpenAI, model: str, prompt: str) -> tuple[float, float, int]:
    """(seconds to the first token, seconds in all, tokens) of one streamed completion."""
    start = time.perf_counter()
    first, pieces = None, 0
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=32,
        temperature=0,
        seed=1,
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start, pieces


def main() -> None:
    data = Path(sys.argv[1])
    ada = Account("bench")
    client = ada.client(ada.new_key()[0])
    with open(EXAMPLES / "support-chats-openai.jsonl", "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    wait_for("validation", lambda: client.files.retrieve(file.id), lambda f: f.status != "uploaded")
    job = client.fine_tuning.jobs.create(model="smollm2-135m", training_file=file.id)
    job = wait_for(
        "training",
        lambda: client.fine_tuning.jobs.retrieve(job.id),
        lambda j: j.status in ("succeeded", "failed"),
        seconds=300,
    )
    name = job.fine_tuned_model
    model_id = name.rsplit(":", 1)[1]

    deploy_start = time.perf_counter()
    ada.api("POST", f"/api/models/{model_id}/deploy", json={"environment": "staging"})
    wait_for(
        "the engine",
        lambda: ada.api("GET", f"/api/models/{model_id}")["model"]["deployment"]["status"],
        lambda s: s in ("deployed", "failed"),
        seconds=300,
    )
    first_token, _, _ = timed(client, name, PROMPTS[0])
    deploy_to_first_token = time.perf_counter() - deploy_start

    # The deployment's one replica (minReplicas 1), as its folder lists it.
    written = json.loads(next((data / "deployments").glob("*/engine.json")).read_text())
    engine = written["replicas"][0]
    direct = OpenAI(base_url=engine["baseUrl"], api_key="unused", max_retries=0)
    runs = {"direct": [], "brightrun": []}
    for i in range(ROUNDS):
        prompt = PROMPTS[i % len(PROMPTS)]
        # Alternating which goes first, so neither always finds the engine warmer.
        order = [("direct", direct, engine["model"]), ("brightrun", client, name)]
        for label, c, m in order if i % 2 == 0 else reversed(order):
            runs[label].append(timed(c, m, prompt))

    def summary(samples):
        return {
            "p50_first_token_s": statistics.median(s[0] for s in samples),
            "p50_latency_s": statistics.median(s[1] for s in samples),
            "tokens_per_s": sum(s[2] for s in samples) / sum(s[1] for s in samples),
        }

    direct_s, proxied = summary(runs["direct"]), summary(runs["brightrun"])
    print(
        json.dumps(
            {
                "rounds": ROUNDS,
                "direct": direct_s,
                "brightrun": proxied,
                "latency_p50_ratio": proxied["p50_latency_s"] / direct_s["p50_latency_s"],
                "tokens_per_s_ratio": proxied["tokens_per_s"] / direct_s["tokens_per_s"],
                "deploy_to_first_token_s": deploy_to_first_token,
                "first_token_after_deployed_s": first_token,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
