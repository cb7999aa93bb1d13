"""Fixtures of the SDK tests: the private `brightrun serve` that scripts/sdk-test.sh started
(BRIGHTRUN_BASE_URL), accounts signed up over HTTP, and API keys created over HTTP."""

import json as _json
import os
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from openai import OpenAI

BASE = os.environ.get("BRIGHTRUN_BASE_URL", "http://127.0.0.1:8080")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Account:
    """A BrightRun user: its login token for /api, and a way to make API keys."""

    def __init__(self, name: str):
        self.token = None
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        signup = {"email": email, "password": "sdk-test-password-1", "name": name}
        self.token = self.api("POST", "/api/auth/signup", json=signup)["token"]

    def api(self, method: str, path: str, json=None, params=None) -> dict:
        """`/api` with the login token (standard library only: the SDK's own HTTP client
        is its business)."""
        url = BASE + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if json is None else _json.dumps(json).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return _json.load(answer)["data"]

    def new_key(self, name: str = "sdk") -> tuple[str, str]:
        """A new API key's secret and id."""
        created = self.api("POST", "/api/auth/api-keys", json={"name": name})
        return created["key"], created["apiKey"]["id"]

    def client(self, key: str) -> OpenAI:
        return OpenAI(base_url=f"{BASE}/v1", api_key=key, max_retries=0)


@pytest.fixture
def account() -> Callable[[str], Account]:
    return Account


def wait_for(what: str, read: Callable, done: Callable, seconds: float = 120):
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {seconds} s: {value}")
        time.sleep(0.25)
        value = read()
    return value
