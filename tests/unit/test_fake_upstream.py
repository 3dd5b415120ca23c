"""The fake upstream itself: its measurements (the rate-limit tests trust them), its own
process, and the official SDK against it (deterministic answers, real usage, faults)."""

from __future__ import annotations

import openai
import pytest

from support import fake_answers
from support.fake_upstream import (
    FakeUpstream,
    FakeUpstreamProcess,
    Record,
    Rule,
    max_in_flight,
    max_in_window,
)


def _record(arrived: float, finished: float, tokens: int = 0, status: int = 200) -> Record:
    return Record(
        seq=0,
        path="/v1/chat/completions",
        model="m",
        arrived=arrived,
        finished=finished,
        status=status,
        prompt_tokens=tokens,
    )


def test_windows_are_half_open_minutes_from_each_arrival() -> None:
    records = [_record(t, t + 1, 10) for t in (0.0, 30.0, 59.999, 60.0, 61.0)]
    assert max_in_window(records, 60.0) == (4, 40)  # 30 .. 61: the one at 0 has left by 60
    assert max_in_window([_record(0, 1, 5), _record(0, 1, 7, status=429)], 60.0) == (2, 5)
    assert max_in_window([], 60.0) == (0, 0)


def test_in_flight_counts_overlaps_and_ends_before_starts() -> None:
    records = [_record(0, 10), _record(1, 2), _record(2, 3), _record(2.5, 4), _record(10, 11)]
    assert max_in_flight(records) == 3  # 0-10, 2-3 and 2.5-4 (1-2 ended as 2-3 began)
    assert max_in_flight([]) == 0


def test_the_sdk_gets_deterministic_answers_and_real_usage() -> None:
    with FakeUpstream(models=["m"], api_key="sk-k") as fake:
        client = openai.OpenAI(base_url=fake.url, api_key="sk-k", max_retries=0)
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        chat = client.chat.completions.create(model="m", messages=messages, max_tokens=4)  # type: ignore[arg-type]
        text, finish = fake_answers.completion_text(fake_answers.chat_prompt_text(messages), 4)
        assert (chat.choices[0].message.content, chat.choices[0].finish_reason) == (text, finish)
        assert chat.usage is not None and chat.usage.completion_tokens <= 4
        assert chat.usage.prompt_tokens == fake_answers.chat_prompt_tokens(messages)
        vectors = client.embeddings.create(model="m", input=["a", "b"])
        assert vectors.data[1].embedding == pytest.approx(fake_answers.vector_for("b", 8))
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=fake.url, api_key="wrong", max_retries=0).models.list()
        fake.add(Rule("status", status=503, headers={"Retry-After": "9"}, times=2))
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as info:
                client.completions.create(model="m", prompt="x")
            assert info.value.response.headers["retry-after"] == "9"
        assert client.completions.create(model="m", prompt="x").choices[0].text
        assert [r.rule for r in fake.records()][-3:] == ["503", "503", None]


def test_the_fake_runs_as_its_own_process() -> None:
    fake = FakeUpstreamProcess(models=["m"])
    try:
        client = openai.OpenAI(base_url=fake.url, api_key="any", max_retries=0)
        fake.add(Rule("wrong_shape", contains="odd"))
        odd = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "odd"}]
        )
        assert odd.choices is None  # valid JSON, no choices: what a client must not trust
        ok = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "ok"}])
        assert ok.choices[0].message.content
        records = fake.records()
        assert [(r.rule, r.status) for r in records] == [("wrong_shape", 200), (None, 200)]
        assert records[1].tokens > 0 and records[1].finished is not None
        fake.reset()
        assert fake.records() == []
    finally:
        fake.stop()
