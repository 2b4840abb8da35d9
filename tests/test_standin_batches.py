"""The stand-in's Files and Batches endpoints, through the real openai client: a batch's statuses as
OpenAI gives them, its output and error files, partial results on expiry and on cancel."""

from __future__ import annotations

import json

import openai
import pytest

from tests.standin import Reply


def client(standin) -> openai.OpenAI:
    return openai.OpenAI(base_url=standin.base_url, api_key="sk-test", max_retries=0)


def lines(texts: list[str]) -> bytes:
    requests = [
        {"custom_id": f"task-{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}}
        for n, text in enumerate(texts)
    ]  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in requests).encode()


def submit(standin, texts: list[str]):
    api = client(standin)
    uploaded = api.files.create(file=("batch.jsonl", lines(texts)), purpose="batch")
    return api, api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "7"})


def results(api, file_id: str) -> dict[str, dict]:
    return {line["custom_id"]: line for line in map(json.loads, api.files.content(file_id).text.splitlines())}


def echo(request) -> Reply:
    text = request.user_text
    if text == "fail":
        return Reply.error(500, "the model fell over")
    return Reply.json({"said": text}, usage=(40, 5))


def test_a_batch_goes_through_openais_statuses_one_each_time_it_is_retrieved(standin):
    standin.respond_with(echo)
    api, batch = submit(standin, ["a", "b", "fail"])
    assert (batch.status, batch.request_counts.total, batch.metadata) == ("validating", 3, {"run": "7"})
    seen = [api.batches.retrieve(batch.id).status for _ in range(4)]
    assert seen == ["in_progress", "finalizing", "completed", "completed"]
    done = api.batches.retrieve(batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    assert done.in_progress_at and done.finalizing_at and done.completed_at

    answered = results(api, done.output_file_id)
    assert sorted(answered) == ["task-0", "task-1"]
    assert answered["task-0"]["response"]["status_code"] == 200
    body = answered["task-1"]["response"]["body"]
    assert json.loads(body["choices"][0]["message"]["content"]) == {"said": "b"} and body["usage"]["prompt_tokens"] == 40
    (failed,) = results(api, done.error_file_id).values()
    assert failed["custom_id"] == "task-2" and failed["response"]["status_code"] == 500
    assert failed["response"]["body"]["error"]["message"] == "the model fell over"
    assert standin.batches.answered_lines == 3 and standin.request_count == 0  # no live call was made


def test_a_held_batch_waits_until_released(standin):
    standin.batches.hold_at = "in_progress"
    api, batch = submit(standin, ["a", "b"])
    statuses = {api.batches.retrieve(batch.id).status for _ in range(5)}
    assert statuses == {"in_progress"} and standin.batches.answered_lines == 0
    standin.batches.release(batch.id)
    assert [api.batches.retrieve(batch.id).status for _ in range(2)] == ["finalizing", "completed"]


def test_an_expired_batch_keeps_what_it_answered_and_lists_the_rest_as_expired(standin):
    standin.respond_with(echo)
    standin.batches.expire_after = 2
    api, batch = submit(standin, ["a", "b", "c", "d", "e"])
    assert [api.batches.retrieve(batch.id).status for _ in range(2)] == ["in_progress", "expired"]
    expired = api.batches.retrieve(batch.id)
    assert sorted(results(api, expired.output_file_id)) == ["task-0", "task-1"]
    rest = results(api, expired.error_file_id)
    assert sorted(rest) == ["task-2", "task-3", "task-4"] and {line["error"]["code"] for line in rest.values()} == {"batch_expired"}


def test_cancel_passes_through_cancelling_and_keeps_the_lines_answered(standin):
    standin.respond_with(echo)
    standin.batches.lines_per_step = 1
    standin.batches.hold_at = "cancelling"
    api, batch = submit(standin, ["a", "b", "c"])
    assert [api.batches.retrieve(batch.id).status for _ in range(2)] == ["in_progress", "in_progress"]  # task-0 answered
    assert api.batches.cancel(batch.id).status == "cancelling"
    with pytest.raises(openai.ConflictError):
        api.batches.cancel(batch.id)
    assert api.batches.retrieve(batch.id).status == "cancelling"
    standin.batches.release()
    cancelled = api.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    assert sorted(results(api, cancelled.output_file_id)) == ["task-0"] and cancelled.error_file_id is None
    assert standin.batches.answered_lines == 1


def test_input_that_does_not_validate_fails_the_batch_with_the_line_and_reason(standin):
    api = client(standin)
    broken = lines(["a"]) + b"{not json\n" + lines(["b"])
    uploaded = api.files.create(file=("batch.jsonl", broken), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [("invalid_json_line", 2), ("duplicate_custom_id", 3)]

    standin.batches.fail_validation = "Enqueued token limit reached for gpt-4o-mini."
    again = api.batches.create(input_file_id=api.files.create(file=("ok.jsonl", lines(["a"])), purpose="batch").id,
                               endpoint="/v1/chat/completions", completion_window="24h")
    assert again.status == "failed" and again.errors.data[0].message == "Enqueued token limit reached for gpt-4o-mini."


def test_batches_are_listed_newest_first_and_unknown_ids_are_404(standin):
    api, first = submit(standin, ["a"])
    _, second = submit(standin, ["b"])
    assert [b.id for b in api.batches.list().data] == [second.id, first.id]
    with pytest.raises(openai.NotFoundError):
        api.batches.retrieve("batch-nope")
    with pytest.raises(openai.NotFoundError):
        api.files.content("file-nope")


def test_an_embeddings_batch_answers_each_text(standin):
    api = client(standin)
    request = {"custom_id": "t1", "method": "POST", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": ["cheap flight"]}}
    uploaded = api.files.create(file=("e.jsonl", (json.dumps(request) + "\n").encode()), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    for _ in range(3):
        batch = api.batches.retrieve(batch.id)
    assert batch.status == "completed"
    body = results(api, batch.output_file_id)["t1"]["response"]["body"]
    assert len(body["data"][0]["embedding"]) == 64 and body["usage"]["prompt_tokens"] == 2
