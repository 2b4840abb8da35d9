"""core.batch_api against the stand-in's Files and Batches endpoints, through the real openai client:
parts within the limits, a batch followed to its end, each request's reply or reason read back."""

from __future__ import annotations

import json

import openai
import pytest

from core import batch_api, calls
from tests.standin import Reply

SCHEMA = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["Positive", "Negative"]}}, "required": ["sentiment"], "additionalProperties": False}


def request(text: str) -> calls.Request:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "temperature": 0.0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}},
        "logprobs": True,
    }
    return calls.Request(body=body, provider="openai-compatible stand-in")


def client(standin) -> openai.OpenAI:
    return openai.OpenAI(base_url=standin.base_url, api_key="sk-test", max_retries=0)


def answers(request) -> Reply:
    text = request.user_text
    if text == "busy":
        return Reply.error(429, "Rate limit reached for requests")
    return Reply.json({"sentiment": "Negative" if "bad" in text else "Positive"}, usage=(30, 4, 10))


def follow(api, batch_id: str) -> batch_api.State:
    for _ in range(10):  # the stand-in moves a batch on one status each time it is read
        found = batch_api.state(api, batch_id)
        if found.ended:
            return found
    raise AssertionError(f"batch {batch_id} did not end")


def test_parts_keep_within_the_request_and_byte_limits_in_order():
    lines = [batch_api.line(f"task-{n}", request("x" * n)) for n in range(10)]
    by_count = list(batch_api.parts(lines, max_requests=4))
    assert [len(p) for p in by_count] == [4, 4, 2] and sum(by_count, []) == lines
    limit = sum(len(one) for one in lines[:3])  # exactly three of the first lines fit
    by_size = list(batch_api.parts(lines, max_bytes=limit))
    assert sum(by_size, []) == lines and all(sum(map(len, p)) <= limit for p in by_size) and len(by_size[0]) == 3
    with pytest.raises(batch_api.BatchError, match="more than a batch file may hold"):
        list(batch_api.parts(lines, max_bytes=10))


def test_a_line_is_the_call_as_it_would_be_sent_live():
    sent = json.loads(batch_api.line("task-7", request("great")))
    assert sent == {"custom_id": "task-7", "method": "POST", "url": "/v1/chat/completions", "body": request("great").body}
    assert json.loads(batch_api.line("t", request("a"), batch_api.endpoint_for("azure")))["url"] == "/chat/completions"


def test_a_submitted_batch_is_followed_to_its_end_and_each_reply_read_back(standin):
    standin.respond_with(answers)
    api = client(standin)
    texts = {"task-1": "good", "task-2": "bad", "task-3": "busy"}
    submitted = batch_api.submit(api, [batch_api.line(i, request(t)) for i, t in texts.items()], metadata={"prompter_run": "4"})
    assert submitted.requests == 3 and standin.batches.batches[submitted.batch_id].metadata == {"prompter_run": "4"}
    ended = follow(api, submitted.batch_id)
    assert (ended.status, ended.total, ended.completed, ended.failed) == ("completed", 3, 2, 1)

    got = batch_api.replies(api, ended)
    assert json.loads(got["task-1"].raw) == {"sentiment": "Positive"} and json.loads(got["task-2"].raw) == {"sentiment": "Negative"}
    assert (got["task-1"].input_tokens, got["task-1"].output_tokens, got["task-1"].cached_input_tokens) == (30, 4, 10)
    assert got["task-1"].latency_ms is None  # a batch measures no latency per call
    assert got["task-1"].tokens  # log-probabilities come back as from a live call
    assert got["task-3"].error_kind == "rate_limit" and "HTTP 429: Rate limit reached for requests" in got["task-3"].error
    assert standin.request_count == 0  # nothing was sent live


def test_an_expired_batch_gives_what_it_answered_and_says_which_to_send_again(standin):
    standin.respond_with(answers)
    standin.batches.expire_after = 1
    api = client(standin)
    submitted = batch_api.submit(api, [batch_api.line(f"task-{n}", request(f"good {n}")) for n in range(3)])
    ended = follow(api, submitted.batch_id)
    assert ended.status == "expired"
    got = batch_api.replies(api, ended)
    assert got["task-0"].ok and [got[f"task-{n}"].error_kind for n in (1, 2)] == ["batch_expired", "batch_expired"]
    assert "send it again" in got["task-1"].error


def test_cancel_keeps_the_answers_given_before_it(standin):
    standin.respond_with(answers)
    standin.batches.lines_per_step = 1
    api = client(standin)
    submitted = batch_api.submit(api, [batch_api.line(f"task-{n}", request("good")) for n in range(3)])
    batch_api.state(api, submitted.batch_id)
    batch_api.state(api, submitted.batch_id)  # in progress, one answered
    assert batch_api.cancel(api, submitted.batch_id).status == "cancelled"  # the stand-in's cancelling passes on the next read
    assert batch_api.cancel(api, submitted.batch_id).status == "cancelled"  # cancelling again is harmless
    ended = batch_api.state(api, submitted.batch_id)
    assert list(batch_api.replies(api, ended)) == ["task-0"]


def test_a_batch_that_does_not_validate_says_why_and_a_refused_upload_is_an_error(standin):
    standin.batches.fail_validation = "Enqueued token limit reached for gpt-4o-mini."
    api = client(standin)
    submitted = batch_api.submit(api, [batch_api.line("task-1", request("good"))])
    ended = batch_api.state(api, submitted.batch_id)
    assert ended.status == "failed" and ended.errors == ("Enqueued token limit reached for gpt-4o-mini.",)
    assert batch_api.replies(api, ended) == {}
    wrong_key = openai.OpenAI(base_url=standin.base_url, api_key="sk-wrong", max_retries=0)
    standin.api_key = "sk-right"
    with pytest.raises(batch_api.BatchError, match="rejected the API key"):
        batch_api.submit(wrong_key, [batch_api.line("task-1", request("good"))])
