"""`prepshelf jobs` and `prepshelf search`: read-only views over the API."""

from __future__ import annotations

from typing import Any

from prepshelf.client.http import ApiError, ClientConfig, async_client, check, find_store
from prepshelf.client.render import Output


async def _store_id(client: Any, name: str) -> str:
    store = await find_store(client, name)
    if store is None:
        raise ApiError(404, f"no vector store named {name!r}")
    return str(store["id"])


# The order a job goes through its stages: an archive expands first, then its members run;
# a scan is read by OCR between parsing and chunking; a run (sync, evaluation) lists, copies,
# waits for its files' ingest jobs, and an evaluation searches.
_STAGE_ORDER = (
    "expanding",
    "members",
    "parsing",
    "ocr",
    "chunking",
    "embedding",
    "indexing",
    "listing",
    "copying",
    "ingesting",
    "searching",
)


def stage_of(job: dict[str, Any]) -> str:
    """The stage a job is in; for a finished job the stage it ended in: where it failed, or
    the last one it went through (the API clears `stage` when a job finishes)."""
    if job.get("stage"):
        return str(job["stage"])
    error = job.get("error")
    if isinstance(error, dict) and error.get("stage"):
        return str(error["stage"])
    timed = job.get("stage_durations") or {}
    reached = [stage for stage in _STAGE_ORDER if stage in timed]
    return reached[-1] if reached else ""


def _progress(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    if p.get("total") is None:
        return ""
    return f"{p.get('done', 0)}/{p['total']} {p.get('unit') or ''}".strip()


async def jobs(
    config: ClientConfig, *, status: str | None, store: str | None, limit: int, out: Output
) -> int:
    async with async_client(config) as client:
        params: dict[str, Any] = {"limit": limit, "order": "desc"}
        if status:
            params["status"] = status
        if store:
            params["vector_store_id"] = await _store_id(client, store)
        page = check(await client.get("/v1/jobs", params=params))
    rows = [
        (
            j["id"],
            j["status"],
            stage_of(j),
            _progress(j),
            j.get("attempts", 0),
            "" if j.get("duration_s") is None else f"{j['duration_s']:.1f}s",
            j.get("file_id") or "",
            ((j.get("error") or {}).get("message") or "")[:200],
        )
        for j in page["data"]
    ]
    out.table(["job", "status", "stage", "progress", "attempts", "duration", "file", "error"], rows)
    if page.get("has_more"):
        out.line(f"(newest {len(rows)} shown; more with --limit)")
    return 0


async def search(config: ClientConfig, *, store: str, query: str, n: int, out: Output) -> int:
    async with async_client(config) as client:
        store_id = await _store_id(client, store)
        body = {"query": query, "max_num_results": n}
        result = check(await client.post(f"/v1/vector_stores/{store_id}/search", json=body))
    hits = result.get("data") or []
    if not hits:
        out.line("no results")
    for rank, hit in enumerate(hits, 1):
        text = " ".join(c.get("text", "") for c in hit.get("content") or [])
        snippet = " ".join(text.split())
        if len(snippet) > 240:
            snippet = snippet[:237] + "..."
        where = _where(hit.get("attributes") or {})
        out.line(f"{rank}. {hit['score']:.3f}  {hit.get('filename') or hit['file_id']}{where}")
        out.line(f"   {snippet}")
    return 0


def _where(attributes: dict[str, Any]) -> str:
    """'  p. 3-4 (OCR)' from a hit's chunk attributes; empty for documents without pages."""
    page, last = attributes.get("page"), attributes.get("page_end")
    if not isinstance(page, int | float) or isinstance(page, bool):
        return ""
    pages = f"p. {int(page)}"
    if isinstance(last, int | float) and last != page:
        pages += f"-{int(last)}"
    return f"  {pages}" + (" (OCR)" if attributes.get("ocr") is True else "")
