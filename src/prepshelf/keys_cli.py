"""`prepshelf keys create|list|revoke`: manage API keys straight in the database.

The database is PREPSHELF_DATABASE_URL, or else the embedded server of the data dir (joined
if `prepshelf serve` is running, started for the command otherwise). A data dir that holds no
database is an error: the command never creates one it was not pointed at. `list` also shows
the keys the server takes from its configuration (the key `serve` generated into
<data_dir>/api_key, PREPSHELF_API_KEYS). A running API notices a revoked key within
`key_cache_ttl_s` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from prepshelf.domain.keys import ApiKey
from prepshelf.settings import Settings

Work = Callable[[Any, argparse.Namespace, Settings], Coroutine[Any, Any, int]]
CONFIG_PROJECT = "default"  # the project PREPSHELF_API_KEYS and the generated key belong to


class NoDatabaseError(Exception):
    """The data dir holds no embedded database and no PREPSHELF_DATABASE_URL is set."""


def add_keys_command(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys (talks to the database)")
    data_dir_help = (
        "data dir of `prepshelf serve` (its embedded database; never created here) when "
        "PREPSHELF_DATABASE_URL is unset [PREPSHELF_DATA_DIR]"
    )
    keys.add_argument("--data-dir", type=Path, help=data_dir_help)
    actions = keys.add_subparsers(dest="keys_command", required=True)

    create = actions.add_parser("create", help="create a key (shown once) for a project")
    create.add_argument("--project", required=True, help="project name (created if new)")
    create.add_argument("--name", help="a label for the key")
    create.add_argument(
        "--admin", action="store_true", help="may manage projects and keys over /v1/admin"
    )
    create.set_defaults(func=_command(_create))

    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--project", help="only this project's keys")
    listing.set_defaults(func=_command(_list))

    revoke = actions.add_parser("revoke", help="revoke a key by its id (key_…)")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_command(_revoke))
    for action in (create, listing, revoke):  # also after the action: `keys list --data-dir D`
        action.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=data_dir_help)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    if settings.database_url:
        yield settings.database_url
        return
    if not (settings.pg_dir / "PG_VERSION").exists():
        raise NoDatabaseError(
            f"no database in {settings.data_dir} (no {settings.pg_dir}); pass the data dir "
            "`prepshelf serve` runs with (--data-dir or PREPSHELF_DATA_DIR), or set "
            "PREPSHELF_DATABASE_URL for an external database"
        )
    from prepshelf.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.pg_dir)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def _command(work: Work) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from prepshelf.errors import PrepshelfError
        from prepshelf.store.migrate import apply_migrations

        overrides = {"data_dir": args.data_dir} if args.data_dir else {}
        settings = Settings(**overrides)
        try:
            with database_url(settings) as url:
                apply_migrations(url)
                return asyncio.run(_with_connection(url, work, args, settings))
        except NoDatabaseError as exc:
            print(f"prepshelf keys: {exc}", file=sys.stderr)
            return 2
        except PrepshelfError as exc:
            print(f"prepshelf keys: {exc.message}", file=sys.stderr)
            return 1

    return run


async def _with_connection(
    url: str, work: Work, args: argparse.Namespace, settings: Settings
) -> int:
    import psycopg
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        return await work(conn, args, settings)


async def _create(conn: Any, args: argparse.Namespace, settings: Settings) -> int:
    from prepshelf.store import keys as keys_db

    project = await keys_db.get_project_by_name(conn, name=args.project)
    if project is None:
        project = await keys_db.create_project(conn, name=args.project)
        print(f"created project {project.name} ({project.id})", file=sys.stderr)
    key, secret = await keys_db.create_key(
        conn, project_id=project.id, name=args.name, is_admin=args.admin
    )
    print(
        f"created {'admin ' if key.is_admin else ''}key {key.id} for project "
        f"{project.name}; it is shown only now:",
        file=sys.stderr,
    )
    print(secret)
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def config_key_rows(settings: Settings) -> list[tuple[str, ...]]:
    """`keys list` rows for the keys the server takes from configuration, not the database:
    PREPSHELF_API_KEYS, or else the key `prepshelf serve` generated into <data_dir>/api_key.
    They are admin keys of the default project; to revoke one, remove it and restart."""
    from prepshelf.store.keys import display_prefix

    def row(key_id: str, name: str, key: str, created: str = "-") -> tuple[str, ...]:
        return (key_id, CONFIG_PROJECT, name, display_prefix(key) + "…", "yes", created, "-", "-")

    if settings.api_keys:
        return [
            row(f"PREPSHELF_API_KEYS[{i}]", "from the environment", key)
            for i, key in enumerate(settings.api_keys)
        ]
    path = settings.data_dir / "api_key"
    try:
        key = path.read_text(encoding="utf-8").strip()
        created = _when(datetime.fromtimestamp(path.stat().st_mtime))
    except OSError:
        return []
    return [row("(api_key file)", f"generated by serve: {path}", key, created)] if key else []


async def _list(conn: Any, args: argparse.Namespace, settings: Settings) -> int:
    from prepshelf.store import keys as keys_db
    from prepshelf.store.pages import PageRequest

    project_id = None
    if args.project:
        project = await keys_db.get_project_by_name(conn, name=args.project)
        if project is None:
            print(f"prepshelf keys: no project named {args.project!r}", file=sys.stderr)
            return 1
        project_id = project.id
    keys: list[ApiKey] = []
    after = None
    while True:
        page = await keys_db.list_keys(
            conn, project_id=project_id, page=PageRequest(limit=100, order="asc", after=after)
        )
        keys += page.rows
        if not page.has_more:
            break
        after = page.rows[-1].id
    header = ("ID", "PROJECT", "NAME", "KEY", "ADMIN", "CREATED", "LAST USED", "REVOKED")
    lines: list[tuple[str, ...]] = [
        (
            k.id,
            k.project_name,
            k.name or "-",
            k.prefix + "…",
            "yes" if k.is_admin else "no",
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    if args.project in (None, CONFIG_PROJECT):
        lines = [*config_key_rows(settings), *lines]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=False)]
    for line in (header, *lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return 0


async def _revoke(conn: Any, args: argparse.Namespace, settings: Settings) -> int:
    from prepshelf.store import keys as keys_db

    key = await keys_db.revoke_key(conn, key_id=args.key_id)
    if key is None:
        print(f"prepshelf keys: no key with id {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {key.id} ({key.project_name}) at {_when(key.revoked_at)}")
    return 0


async def active_key_count(url: str) -> int:
    """How many unrevoked keys the database holds (the serve/api exposure check uses it)."""
    import psycopg
    from psycopg.rows import dict_row

    from prepshelf.store import keys as keys_db

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        return await keys_db.count_active_keys(conn)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_error(role: str, settings: Settings, url: str, *, need_keys: bool) -> str | None:
    """Why the server must not start with these keys, or None.

    A non-loopback bind needs keys configured on purpose: PREPSHELF_API_KEYS set or an active
    key in the database (`prepshelf keys create`). The key `serve` generates into
    <data_dir>/api_key on first start does not count: it exists so that a local server is
    never open, not as a decision to expose the server to a network. `need_keys` (the bare
    `api` role, which generates nothing) also refuses a server that no key could ever reach.
    """
    if settings.api_keys:
        return None
    loopback = is_loopback(settings.host)
    if (loopback and not need_keys) or asyncio.run(active_key_count(url)) > 0:
        return None
    if not loopback:
        return (
            f"prepshelf {role}: refusing to listen on {settings.host} without API keys "
            "configured; set PREPSHELF_API_KEYS or run `prepshelf keys create --project NAME` "
            "first (or bind 127.0.0.1)"
        )
    return (
        f"prepshelf {role}: no API keys configured; set PREPSHELF_API_KEYS or run "
        "`prepshelf keys create --project NAME`"
    )
