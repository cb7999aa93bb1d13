"""What the contract test tells schemathesis that a JSON Schema cannot say (loaded by
scripts/contract-test.sh through SCHEMATHESIS_HOOKS). Every check stays on for every
operation; these hooks only shape what it sends.

- Rules that span two values, or a value and the clock: generated requests that break them
  are left out (the API answers each 400; the e2e tests prove it).
- Test data: a schema-valid request must name things that exist. A job created through /v1
  trains on the seeded account's file and a base model; a file uploaded is a JSONL dataset.

`filter_case` and `map_case` are the hooks every phase applies, the coverage phase included.
"""

import datetime
import os

import schemathesis


def _positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _inverted(values, low: str, high: str) -> bool:
    """Whether both are there and `low` is after `high`: as numbers when both read as
    numbers (a query's values may come as text), else as they are (dates as text)."""
    if not isinstance(values, dict) or low not in values or high not in values:
        return False
    a, b = values[low], values[high]
    for number in (int, float):
        try:
            a, b = number(a), number(b)
            break
        except (TypeError, ValueError):
            continue
    try:
        return a > b
    except TypeError:  # values of other types: a negative case, left as it is
        return False


@schemathesis.hook("filter_case").apply_to(path="/api/jobs/{id}/metrics")
def step_range_in_order(ctx, case):
    """fromStep must not be after toStep."""
    return not _inverted(case.query, "fromStep", "toStep")


@schemathesis.hook("filter_case").apply_to(path="/api/costs")
def date_range_in_order(ctx, case):
    """startDate must not be after endDate (YYYY-MM-DD compares as text)."""
    return not _inverted(case.query, "startDate", "endDate")


@schemathesis.hook("filter_case").apply_to(path="/api/models/{id}/deploy")
def replicas_in_order(ctx, case):
    """maxReplicas must be at least minReplicas."""
    return not _inverted(case.body, "minReplicas", "maxReplicas")


@schemathesis.hook("filter_case").apply_to(path="/api/auth/api-keys", method="POST")
def expiry_in_the_future(ctx, case):
    """expiresAt must be in the future (a minute's margin for the request's way there), and
    at most 3650 days away (a day's margin)."""
    if not _positive(case) or not isinstance(case.body, dict):
        return True
    expires = case.body.get("expiresAt")
    if not isinstance(expires, str):
        return True
    try:
        at = datetime.datetime.fromisoformat(expires)
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    now = datetime.datetime.now(datetime.UTC)
    return (
        now + datetime.timedelta(minutes=1) < at < now + datetime.timedelta(days=3649)
    )


@schemathesis.hook("map_case").apply_to(path="/v1/fine_tuning/jobs", method="POST")
def a_real_file_and_model(ctx, case):
    """A job is created on the seeded, training-ready file, with a model of the catalogue."""
    if _positive(case) and isinstance(case.body, dict):
        case.body["training_file"] = os.environ["CONTRACT_TRAINING_FILE"]
        case.body["model"] = "smollm2-135m"
    return case


JSONL = (
    b'{"messages": [{"role": "user", "content": "Where is my order?"}, '
    b'{"role": "assistant", "content": "It ships tomorrow."}]}\n'
)


@schemathesis.hook("map_case").apply_to(path="/v1/files", method="POST")
def a_jsonl_file(ctx, case):
    """An uploaded file is a JSONL dataset (random bytes are in no format BrightRun reads)."""
    if _positive(case) and isinstance(case.body, dict) and "file" in case.body:
        case.body["file"] = JSONL
    return case
