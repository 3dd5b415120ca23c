"""Structured logs: the filter adds context ids; the JSON format writes parseable lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from prepshelf import logs


def _logger(fmt: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(fmt)
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_bound_ids() -> None:
    logger, stream = _logger(logs.JsonFormatter())
    with logs.context(job_id="job_1", file_id="file-1"):
        logs.bind(vector_store_id="vs_1", file_batch_id="vsfb_1", batch_id="batch_1")
        logger.info("parsed %d pages", 3)
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "parsed 3 pages"
    assert first["level"] == "INFO"
    assert (first["job_id"], first["file_id"]) == ("job_1", "file-1")
    assert (first["vector_store_id"], first["file_batch_id"]) == ("vs_1", "vsfb_1")
    assert first["batch_id"] == "batch_1"
    # Leaving the block restores every id, also those bound inside it.
    assert not {"job_id", "file_id", "vector_store_id", "file_batch_id", "batch_id"} & set(second)


def test_json_keeps_tracebacks_on_one_line() -> None:
    logger, stream = _logger(logs.JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "ValueError: boom" in json.loads(lines[0])["exc_info"]


def test_text_format_appends_ids_to_the_first_line() -> None:
    logger, stream = _logger(logs.TextFormatter())
    with logs.context(job_id="job_9"):
        logger.info("hello")
    assert stream.getvalue().rstrip().endswith("hello [job_id=job_9]")


def test_ids_bound_in_one_task_do_not_leak_into_another() -> None:
    async def bind_and_read(job_id: str) -> tuple[str | None, str | None]:
        logs.bind(job_id=job_id)
        await asyncio.sleep(0)
        return job_id, logs.current().get("job_id")

    async def main() -> list[tuple[str | None, str | None]]:
        return await asyncio.gather(bind_and_read("job_a"), bind_and_read("job_b"))

    for expected, seen in asyncio.run(main()):
        assert expected == seen
    assert "job_id" not in logs.current()


def test_setup_quiets_procrastinate_unless_debug() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        logs.setup(level="INFO", fmt="json")
        assert logging.getLogger("procrastinate").level == logging.WARNING
        assert [h.get_name() for h in root.handlers].count("prepshelf") == 1
        logs.setup(level="DEBUG", fmt="text")  # idempotent: still one handler
        assert logging.getLogger("procrastinate").level == logging.NOTSET
        assert [h.get_name() for h in root.handlers].count("prepshelf") == 1
    finally:
        for h in [h for h in root.handlers if h.get_name() == "prepshelf"]:
            root.removeHandler(h)
        root.setLevel(saved[0])
        logging.getLogger("procrastinate").setLevel(logging.NOTSET)
