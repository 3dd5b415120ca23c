"""The client commands of `prepshelf`: ingest, jobs, search (parsers and entry points).

Importing this is cheap: httpx and rich load only when a client command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="data dir of a local `prepshelf serve`: its server.json gives the URL and its "
        "api_key the key [PREPSHELF_DATA_DIR, default the serve default]",
    )
    parser.add_argument(
        "--url",
        help="server base URL [PREPSHELF_URL, else the data dir's server.json, "
        "else http://127.0.0.1:8000]",
    )
    parser.add_argument(
        "--api-key", help="API key [PREPSHELF_API_KEY, else the api_key file of the data dir]"
    )


def _run(
    args: argparse.Namespace, work: Callable[..., Coroutine[Any, Any, int]], **kwargs: Any
) -> int:
    import httpx

    from prepshelf.client.http import ApiError, resolve_config
    from prepshelf.client.ingest import UsageError
    from prepshelf.client.render import Output

    config = resolve_config(args.url, args.api_key, args.data_dir)
    try:
        return asyncio.run(work(config, out=Output(), **kwargs))
    except UsageError as exc:
        print(f"prepshelf {args.command}: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(
            f"prepshelf {args.command}: {config.server()}: {exc}{config.hint(exc.status)}",
            file=sys.stderr,
        )
        return 1
    except httpx.HTTPError as exc:
        print(
            f"prepshelf {args.command}: cannot reach {config.server()}: {exc}{config.hint()}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"prepshelf {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_ingest(args: argparse.Namespace) -> int:
    from prepshelf.client.ingest import ingest

    return _run(
        args,
        ingest,
        paths=args.paths,
        store_name=args.store,
        wait=args.wait,
        concurrency=args.concurrency,
        force=args.force,
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    from prepshelf.client.queries import jobs

    return _run(args, jobs, status=args.status, store=args.store, limit=args.limit)


def cmd_search(args: argparse.Namespace) -> int:
    from prepshelf.client.queries import search

    return _run(args, search, store=args.store, query=args.query, n=args.n)


def add_client_commands(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="upload files/folders into a vector store (client)")
    ingest.add_argument("paths", nargs="+", type=Path, help="files and folders (recursive)")
    ingest.add_argument("--store", required=True, help="vector store name (created if absent)")
    ingest.add_argument("--wait", action="store_true", help="follow the batch to its end")
    ingest.add_argument("--concurrency", type=int, default=4, help="parallel uploads [4]")
    ingest.add_argument(
        "--force", action="store_true", help="upload files even when unchanged in the store"
    )
    _common(ingest)
    ingest.set_defaults(func=cmd_ingest)

    jobs = sub.add_parser("jobs", help="list recent jobs (client)")
    jobs.add_argument("--status", choices=JOB_STATUSES)
    jobs.add_argument("--store", help="only this vector store (by name)")
    jobs.add_argument("--limit", type=int, default=20, help="how many, newest first [20]")
    _common(jobs)
    jobs.set_defaults(func=cmd_jobs)

    search = sub.add_parser("search", help="search a vector store (client)")
    search.add_argument("store", help="vector store name")
    search.add_argument("query")
    search.add_argument("-n", type=int, default=5, help="results [5]")
    _common(search)
    search.set_defaults(func=cmd_search)
