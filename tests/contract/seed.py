"""Gives the contract test real resources to follow links to: a ready dataset, a completed
job with its model, and the notifications they raised (standard library only).

    python3 tests/contract/seed.py BASE_URL TOKEN      # prints the dataset's /v1 file id
"""

import json
import sys
import time
import urllib.request
from pathlib import Path

BASE, TOKEN = sys.argv[1], sys.argv[2]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-chats-v4.jsonl"


def call(method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["data"]


def wait(what, read, done, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.5)
    sys.exit(f"seed: {what} did not finish in {seconds} s: {value}")


file = EXAMPLE.read_bytes()
dataset = call(
    "POST",
    "/api/datasets",
    {
        "name": "Contract support chats",
        "format": "brightrun-lora-v4",
        "fileName": EXAMPLE.name,
        "fileSize": len(file),
    },
)["datasetId"]
call("POST", f"/api/datasets/{dataset}/upload", file, "application/octet-stream")
wait(
    "validation",
    lambda: call("GET", f"/api/datasets/{dataset}")["dataset"]["status"],
    lambda s: s in ("ready", "error"),
)
job = call(
    "POST",
    "/api/jobs",
    {
        "datasetId": dataset,
        "presetId": "balanced",
        "baseModel": "llama-3-8b",
        "gpuConfig": {"instanceType": "a100-80gb", "numGPUs": 1},
    },
)["jobId"]
wait(
    "training",
    lambda: call("GET", f"/api/jobs/{job}")["job"]["status"],
    lambda s: s in ("completed", "failed", "cancelled"),
)
print(f"seed: dataset {dataset}, job {job} ready", file=sys.stderr)
# The training file /v1's job creation is tried on (schemathesis.toml reads it).
print(f"file-{dataset}")
