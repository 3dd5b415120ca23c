"""Cursor pagination as OpenAI's: `limit`, `order`, `after`, `before` over (created_at, id)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from psycopg import AsyncConnection

from prepshelf.errors import InvalidRequestError

Order = Literal["asc", "desc"]
T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class PageRequest:
    limit: int = 20
    order: Order = "desc"
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    has_more: bool

    def map(self, typed: Callable[[T], U]) -> Page[U]:
        """The same page with each row made into its typed object."""
        return Page(rows=[typed(r) for r in self.rows], has_more=self.has_more)


async def fetch_page(
    conn: AsyncConnection[Any],
    *,
    select: str,
    where: str,
    params: list[Any],
    key_created: str,
    key_id: str,
    cursor_lookup: str,
    cursor_params: list[Any],
    page: PageRequest,
) -> Page[dict[str, Any]]:
    """Run `select … WHERE where` one page at a time, keyed on (key_created, key_id).

    `cursor_lookup` returns (created_at) for the object named by a cursor among the rows the
    caller may see; an unknown cursor is a 400 naming the parameter, never a silent restart.
    """
    clauses = [where]
    args = list(params)
    for name, cursor, newer in (
        ("after", page.after, page.order == "asc"),
        ("before", page.before, page.order == "desc"),
    ):
        if cursor is None:
            continue
        row = await (await conn.execute(cursor_lookup, [*cursor_params, cursor])).fetchone()
        if row is None:
            raise InvalidRequestError(f"Invalid '{name}': no object with id {cursor!r}", param=name)
        op = ">" if newer else "<"
        clauses.append(f"({key_created}, {key_id}) {op} (%s, %s)")
        args += [row["created_at"], cursor]
    # `before` alone walks backwards from the cursor; fetch in reverse and flip.
    backwards = page.before is not None and page.after is None
    direction = page.order.upper()
    if backwards:
        direction = "ASC" if page.order == "desc" else "DESC"
    query = (
        f"{select} WHERE {' AND '.join(clauses)} "
        f"ORDER BY {key_created} {direction}, {key_id} {direction} LIMIT %s"
    )
    rows = await (await conn.execute(query, [*args, page.limit + 1])).fetchall()
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    if backwards:
        rows.reverse()
    return Page(rows=list(rows), has_more=has_more)
