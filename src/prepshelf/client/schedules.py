"""`prepshelf schedules`: list schedules, pause, resume, or start a run now."""

from __future__ import annotations

from datetime import datetime

from prepshelf.client.http import ClientConfig, async_client, check
from prepshelf.client.render import Output


def _when(ts: int | None) -> str:
    return (
        "" if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="minutes")
    )


async def list_schedules(config: ClientConfig, *, limit: int, out: Output) -> int:
    async with async_client(config) as client:
        page = check(await client.get("/v1/schedules", params={"limit": limit}))
    out.table(
        ["schedule", "name", "kind", "cron", "timezone", "status", "next run", "last run"],
        [
            [
                s["id"],
                s.get("name") or "",
                s["kind"],
                s["cron"],
                s["timezone"],
                s["status"],
                _when(s["next_run_at"]),
                _when(s["last_run_at"]),
            ]
            for s in page["data"]
        ],
    )
    return 0


async def act(config: ClientConfig, *, schedule_id: str, action: str, out: Output) -> int:
    """pause | resume | run (a run is printed as the job it started)."""
    async with async_client(config) as client:
        body = check(await client.post(f"/v1/schedules/{schedule_id}/{action}"))
    if action == "run":
        out.line(f"started job {body['id']} ({body['kind']}) for schedule {schedule_id}")
    else:
        following = _when(body["next_run_at"]) or "-"
        out.line(f"schedule {schedule_id} is {body['status']}; next run {following}")
    return 0
