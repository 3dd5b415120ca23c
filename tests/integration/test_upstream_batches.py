"""/v1/batches for chat and completions against an upstream (a fake OpenAI-compatible server
on loopback), driven by the official SDK: answers in OpenAI's shapes with usage totals, line
errors that stay the line's, 429/500 retried, cancel mid-batch, a worker killed mid-slice,
the upstream's limits held across two workers, and fair share between two projects."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from support.fake_answers import chat_prompt_text, completion_text
from support.fake_upstream import FakeUpstream, Rule, max_in_flight, max_in_window
from support.postgres import TestPostgres as Postgres  # not collected as a test class
from support.service import FAST_RECOVERY, Service
from support.tenants import new_tenant, ok
from support.upstream_batches import (
    MODEL,
    chat_line,
    create,
    lines_of,
    messages,
    sends,
    upstream_config,
    wait,
)

RPM, MAX_CONCURRENT = 600, 4


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=[MODEL]) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def svc(
    database_url: str, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    config = upstream_config(fake.url, rpm=RPM, max_concurrent=MAX_CONCURRENT)
    with Service(
        database_url,
        Path(tmp_path_factory.mktemp("upstream-batches")),
        workers=2,
        extra_env={
            "PREPSHELF_UPSTREAMS": json.dumps(config),
            "PREPSHELF_BATCH_SLICE_LINES": "8",
            "PREPSHELF_BATCH_TURN_S": "1",
            "PREPSHELF_UPSTREAM_POLL_S": "0.1",
            **FAST_RECOVERY,
        },
    ) as service:
        yield service


@pytest.fixture(autouse=True)
def _clean_fake(fake: FakeUpstream) -> Iterator[None]:
    fake.reset()
    yield
    records = fake.records()  # whatever a test did, the limits held
    assert max_in_flight(records) <= MAX_CONCURRENT
    assert max_in_window(records, 60.0)[0] <= RPM


def test_a_chat_batch_answers_every_line_in_openais_shapes(
    svc: Service, fake: FakeUpstream
) -> None:
    client = svc.openai()
    lines = [chat_line(i, "ok") for i in range(20)]
    lines.append(chat_line(20, "ok", model="no-such-model"))
    batch = wait(client, create(client, lines).id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.total, batch.request_counts.completed) == (21, 20)
    assert batch.request_counts.failed == 1
    out = lines_of(client, batch.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(f"ok-{i}" for i in range(20))
    for o in out:
        i = int(o["custom_id"].split("-")[1])
        body = o["response"]["body"]
        assert o["response"]["status_code"] == 200 and o["error"] is None
        expected, _ = completion_text(chat_prompt_text(messages(i, "ok")), 30)
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == expected
    (err,) = lines_of(client, batch.error_file_id)
    assert err["custom_id"] == "ok-20" and err["response"]["status_code"] == 404
    assert err["response"]["body"]["error"]["code"] == "model_not_found"
    served = [r for r in fake.records() if r.status == 200]
    assert len(served) == 20  # the unknown model's line was never sent
    usage = batch.usage
    assert usage.input_tokens == sum(r.prompt_tokens for r in served)
    assert usage.output_tokens == sum(r.completion_tokens for r in served)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    job = ok(svc.http().get(f"/v1/jobs/{batch.job_id}"))
    assert job["status"] == "succeeded" and job["progress"]["done"] == 21


def test_transient_faults_are_retried_and_refusals_stay_the_lines_errors(
    svc: Service, fake: FakeUpstream
) -> None:
    fake.add(
        Rule(
            "status", status=429, headers={"Retry-After": "1"}, contains="fault ticket 1:", times=2
        ),
        Rule("status", status=500, contains="ticket 2:", times=1),
        Rule("status", status=400, contains="ticket 3:", times=None),
        Rule("not_json", contains="ticket 4:", times=None),
    )
    client = svc.openai()
    lines = [chat_line(i, "fault") for i in range(8)]
    batch = wait(client, create(client, lines).id)
    assert batch.status == "completed", batch
    out = {o["custom_id"]: o for o in lines_of(client, batch.output_file_id)}
    errors = {e["custom_id"]: e for e in lines_of(client, batch.error_file_id)}
    assert set(out) == {f"fault-{i}" for i in (0, 1, 2, 5, 6, 7)}
    assert set(errors) == {"fault-3", "fault-4"}
    assert errors["fault-3"]["response"]["status_code"] == 400
    assert errors["fault-4"]["response"]["status_code"] == 502
    assert errors["fault-4"]["response"]["body"]["error"]["code"] == "upstream_bad_response"
    assert [sends(fake, lines[i]) for i in range(8)] == [1, 3, 2, 1, 1, 1, 1, 1]


def test_completions_batch(svc: Service) -> None:
    client = svc.openai()
    lines = [
        {
            "custom_id": f"c-{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": MODEL, "prompt": f"Label record {i}:", "max_tokens": 5},
        }
        for i in range(5)
    ]
    batch = wait(client, create(client, lines, "/v1/completions").id)
    assert batch.status == "completed" and batch.request_counts.completed == 5
    texts = {
        o["custom_id"]: o["response"]["body"]["choices"][0]["text"]
        for o in lines_of(client, batch.output_file_id)
    }
    assert texts == {f"c-{i}": completion_text(f"Label record {i}:", 5)[0] for i in range(5)}


def test_an_endpoint_no_upstream_serves_is_refused_at_create(svc: Service) -> None:
    client = svc.openai()
    f = client.files.create(file=("in.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="not supported by this server"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h")


def test_cancel_mid_batch_accounts_for_every_line_once(svc: Service, fake: FakeUpstream) -> None:
    fake.delay_s = 0.3
    client = svc.openai()
    lines = [chat_line(i, "cancel") for i in range(80)]
    batch = create(client, lines)
    wait(client, batch.id, until=lambda b: b.request_counts.completed >= 8)
    client.batches.cancel(batch.id)
    batch = wait(client, batch.id)
    assert batch.status == "cancelled", batch
    out = lines_of(client, batch.output_file_id)
    errors = lines_of(client, batch.error_file_id)
    ids = Counter(x["custom_id"] for x in out + errors)
    assert ids == Counter(f"cancel-{i}" for i in range(80))
    assert len(out) >= 8 and errors and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert len(fake.records()) < 80  # it stopped sending
    for o in out:  # every answer kept is the one the fake gave
        assert sends(fake, lines[int(o["custom_id"].split("-")[1])]) == 1


def test_fair_share_a_small_batch_of_another_project_runs_within_a_turn(
    svc: Service, fake: FakeUpstream
) -> None:
    fake.delay_s = 0.2
    big_tenant, small_tenant = new_tenant(svc, "big"), new_tenant(svc, "small")
    big_client = openai.OpenAI(base_url=svc.base_url, api_key=big_tenant.key, max_retries=0)
    small_client = openai.OpenAI(base_url=svc.base_url, api_key=small_tenant.key, max_retries=0)
    # Two big batches: both workers busy, so the small one can only run if one yields.
    bigs = [create(big_client, [chat_line(i, f"big{k}") for i in range(160)]) for k in range(2)]
    for b in bigs:
        wait(big_client, b.id, until=lambda x: x.status == "in_progress")
    small = create(small_client, [chat_line(i, "small") for i in range(3)])
    small = wait(small_client, small.id)
    assert small.status == "completed"
    states = [big_client.batches.retrieve(b.id) for b in bigs]
    assert all(s.status == "in_progress" for s in states), states  # still running meanwhile
    for b in bigs:
        big_client.batches.cancel(b.id)
    for b in bigs:
        assert wait(big_client, b.id).status == "cancelled"


@pytest.fixture(scope="module")
def short_window(
    postgres: Postgres, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """A service whose batches expire 4 s after they are created."""
    with Service(
        postgres.new_database(),
        Path(tmp_path_factory.mktemp("upstream-expiry")),
        extra_env={
            "PREPSHELF_UPSTREAMS": json.dumps(
                upstream_config(fake.url, rpm=RPM, max_concurrent=MAX_CONCURRENT)
            ),
            "PREPSHELF_BATCH_SLICE_LINES": "8",
            "PREPSHELF_BATCH_COMPLETION_WINDOW_S": "4",
        },
    ) as service:
        yield service


def test_expiry_keeps_the_answers_and_reports_every_line_never_sent(
    short_window: Service, fake: FakeUpstream
) -> None:
    fake.delay_s = 0.5
    client = short_window.openai()
    lines = [chat_line(i, "expiry") for i in range(80)]  # ~10 s of answers at 4 at a time
    batch = wait(client, create(client, lines).id, timeout_s=120)
    assert batch.status == "expired", batch
    out = lines_of(client, batch.output_file_id)
    errors = lines_of(client, batch.error_file_id)
    assert out and errors
    assert Counter(x["custom_id"] for x in out + errors) == Counter(
        f"expiry-{i}" for i in range(80)
    )
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    for o in out:  # an answer kept is the one answer the fake gave for that line
        assert sends(fake, lines[int(o["custom_id"].split("-")[1])]) == 1
