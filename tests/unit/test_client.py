"""The CLI's API client against stubbed servers (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from prepshelf import local_server
from prepshelf.client import watch
from prepshelf.client.http import ClientConfig, resolve_config
from prepshelf.client.ingest import UsageError, collect
from prepshelf.client.render import FileState, Output


def _frame(event_id: int, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: job.{data['status']}\ndata: {json.dumps(data)}\n\n"


def _job(file_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"file_id": file_id, "status": status, "stage": None, "progress": {}, **extra}


def _states() -> dict[str, FileState]:
    return {
        "file-a": FileState(name="a.txt", file_id="file-a"),
        "file-b": FileState(name="b.pdf", file_id="file-b"),
    }


def test_events_drive_file_states_and_resume_after_a_drop() -> None:
    seen_last_ids: list[str | None] = []
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        seen_last_ids.append(request.headers.get("last-event-id"))
        if calls == 1:
            body = ": keep-alive\n\n" + _frame(
                1,
                _job("file-a", "running", stage="embedding", progress={"done": 2, "total": 4}),
            )
            body += "id: 2\nevent: job.failed\ndata: {"  # the connection drops mid-frame
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        body = _frame(2, _job("file-b", "failed", error={"message": "b.pdf: parsing: broken"}))
        body += _frame(3, _job("file-a", "succeeded", progress={"done": 4, "total": 4}))
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    states = _states()
    changes: list[tuple[str, str]] = []

    async def main() -> None:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(handler), base_url="http://x"
        ) as client:
            await watch.follow_events(
                client, "vsfb_1", states, lambda s: changes.append((s.name, s.status))
            )

    asyncio.run(main())
    assert states["file-a"].status == "completed"
    assert states["file-b"].status == "failed"
    assert states["file-b"].error == "b.pdf: parsing: broken"
    assert seen_last_ids == [None, "1"]  # resumed after the last whole event
    assert ("a.txt", "running") in changes
    assert changes[-1] == ("a.txt", "completed")


def test_a_server_without_events_is_polled() -> None:
    polls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        path = request.url.path
        if path == "/v1/events":
            return httpx.Response(404, json={"error": {"message": "Not Found"}})
        if path.endswith("/file_batches/vsfb_1"):
            polls += 1
            return httpx.Response(200, json={"status": "in_progress" if polls < 2 else "failed"})
        if path == "/v1/jobs":
            assert request.url.params["batch_id"] == "vsfb_1"
            jobs = [_job("file-a", "running"), _job("file-b", "queued")]
            if polls >= 2:
                failed = _job("file-b", "failed", error={"message": "x"})
                jobs = [_job("file-a", "succeeded"), failed]
            return httpx.Response(200, json={"data": jobs, "has_more": False})
        return httpx.Response(500)

    states = _states()

    async def main() -> None:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(handler), base_url="http://x"
        ) as client:
            await watch.follow(client, "vs_1", "vsfb_1", states, lambda s: None)

    asyncio.run(main())
    assert polls == 2
    assert [s.status for s in states.values()] == ["completed", "failed"]


def test_a_finished_file_never_moves_back() -> None:
    states = _states()
    watch.apply_job(states, _job("file-a", "succeeded"), lambda s: None)
    watch.apply_job(states, _job("file-a", "running"), lambda s: None)  # a replayed event
    assert states["file-a"].status == "completed"


def test_collect_walks_folders_and_skips_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("a")
    (tmp_path / "docs" / "sub" / "b.md").write_text("b")
    (tmp_path / "docs" / ".DS_Store").write_text("x")
    (tmp_path / "one.txt").write_text("1")
    found = collect([tmp_path / "docs", tmp_path / "one.txt"])
    assert [name for _, name in found] == ["docs/a.txt", "docs/sub/b.md", "one.txt"]
    with pytest.raises(UsageError):
        collect([tmp_path / "missing"])


def test_config_reads_env_then_the_local_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api_key").write_text("sk-local\n")
    monkeypatch.setenv("PREPSHELF_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PREPSHELF_API_KEY", raising=False)
    monkeypatch.setenv("PREPSHELF_URL", "http://h:9/v1/")
    config = resolve_config()
    assert (config.url, config.api_key) == ("http://h:9", "sk-local")
    assert config.url_from == "PREPSHELF_URL" and config.key_from == str(tmp_path / "api_key")
    monkeypatch.setenv("PREPSHELF_API_KEY", "sk-env")
    assert resolve_config(url="http://other").api_key == "sk-env"
    assert "sk-env" not in repr(resolve_config())


def test_config_finds_a_local_serve_from_its_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prepshelf serve --port 18400 --data-dir D`: the clients need only D."""
    for name in ("PREPSHELF_URL", "PREPSHELF_API_KEY", "PREPSHELF_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    served = tmp_path / "d"
    served.mkdir()
    (served / "api_key").write_text("sk-served\n")
    local_server.write(served, url=local_server.client_url("0.0.0.0", 18400), pid=os.getpid())
    config = resolve_config(data_dir=served)
    assert config == ClientConfig(url="http://127.0.0.1:18400", api_key="sk-served")
    assert config.server() == f"http://127.0.0.1:18400 (from {served / 'server.json'})"
    monkeypatch.setenv("PREPSHELF_DATA_DIR", str(served))
    assert resolve_config().url == "http://127.0.0.1:18400"
    assert resolve_config(url="http://elsewhere:1").url_from == "--url"
    # serve gone without cleaning up (kill -9): the message says so.
    local_server.write(served, url="http://127.0.0.1:18400", pid=2**22 + 12345)
    assert "which is not running" in resolve_config(data_dir=served).url_from
    # Nothing there: the default URL, and the message says why.
    empty = resolve_config(data_dir=tmp_path / "none")
    assert empty.url == "http://127.0.0.1:8000" and empty.api_key is None
    assert "no " + str(tmp_path / "none" / "server.json") in empty.url_from
    assert "sent no key" in empty.hint(401) and "--data-dir" in empty.hint()


def test_client_urls_for_bind_addresses() -> None:
    assert local_server.client_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert local_server.client_url("0.0.0.0", 1) == "http://127.0.0.1:1"
    assert local_server.client_url("::", 2) == "http://[::1]:2"
    assert local_server.client_url("fe80::1", 3) == "http://[fe80::1]:3"


def test_plain_output_is_tab_separated_lines() -> None:
    stream = io.StringIO()
    out = Output(stream, rich=False)
    out.table(["file", "status"], [("a\tb.txt", "failed"), ("c.txt", None)], title="t")
    assert stream.getvalue().splitlines() == ["# t", "file\tstatus", "a b.txt\tfailed", "c.txt\t"]


@pytest.mark.parametrize("n", [3, 25])  # every file's bar / only the active files' bars
def test_rich_view_follows_a_batch_without_crashing(n: int) -> None:
    from prepshelf.client.render import ingest_view

    stream = io.StringIO()
    out = Output(stream, rich=True)
    states = [FileState(name=f"f{i}.txt", file_id=f"file-{i}") for i in range(n)]
    with ingest_view(out, len(states)) as view:
        for state in states:
            view.uploaded(state)
        view.watching(states)
        for i, state in enumerate(states):
            final = ["completed", "failed", "cancelled"][i % 3]
            state.status, state.stage, state.total, state.done = "running", "embedding", 4, 2
            view.changed(state)
            state.status, state.error = final, "boom" if final == "failed" else None
            view.changed(state)
    out.table(["file", "status"], [(s.name, s.status) for s in states])
    text = stream.getvalue()
    assert "f1.txt" in text and "boom" in text


def test_ocr_progress_shows_its_stage_and_pages() -> None:
    from prepshelf.client.render import RichIngestView

    states = _states()
    seen: list[tuple[str | None, int, int | None, str | None]] = []
    ocr = {"done": 3, "total": 12, "unit": "pages"}
    watch.apply_job(
        states,
        _job("file-b", "running", stage="ocr", progress=ocr),
        lambda s: seen.append((s.stage, s.done, s.total, s.unit)),
    )
    assert seen == [("ocr", 3, 12, "pages")]
    view = RichIngestView(Output(io.StringIO(), rich=True), 2)
    view.watching(list(states.values()))
    view.changed(states["file-b"])
    (bar,) = [t for t in view.progress.tasks if t.description.startswith("b.pdf")]
    assert bar.description == "b.pdf [dim]ocr · pages[/dim]"
    assert (bar.completed, bar.total) == (3, 12)


def test_search_lines_name_the_page_and_ocr() -> None:
    from prepshelf.client.queries import _where

    assert _where({"page": 3, "page_end": 4, "ocr": True, "topic": "x"}) == "  p. 3-4 (OCR)"
    assert _where({"page": 2.0, "page_end": 2.0, "ocr": False}) == "  p. 2"  # SDK-style floats
    assert _where({"topic": "x"}) == "" and _where({"page": True}) == ""


def test_stage_of_names_every_stage_a_job_can_end_in() -> None:
    from prepshelf.client.queries import stage_of

    # A finished job has no `stage`; the last timed stage is where it ended.
    scan = {"stage": None, "stage_durations": {"parsing": 0.1, "ocr": 2.0}}
    assert stage_of(scan) == "ocr"
    sync = {"stage": None, "stage_durations": {"listing": 0.1, "copying": 1.0, "ingesting": 3}}
    assert stage_of(sync) == "ingesting"
    evaluation = {"stage": None, "stage_durations": {"searching": 4.0}}
    assert stage_of(evaluation) == "searching"
    failed = {"stage": None, "error": {"stage": "chunking"}, "stage_durations": {"ocr": 1}}
    assert stage_of(failed) == "chunking"
