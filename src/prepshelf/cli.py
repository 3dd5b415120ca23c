"""The `prepshelf` command: serve | api | worker. Every flag also reads a PREPSHELF_* variable."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path

from pydantic import ValidationError

from prepshelf import local_server, logs
from prepshelf.client.commands import add_client_commands
from prepshelf.client.eval_commands import add_eval_commands
from prepshelf.keys_cli import add_keys_command, exposure_error
from prepshelf.settings import Settings

log = logging.getLogger("prepshelf")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k, v in {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "data_dir": getattr(args, "data_dir", None),
            "workers": getattr(args, "workers", None),
        }.items()
        if v is not None
    }
    return Settings(**overrides)


def _upstreams_refusal(settings: Settings, role: str) -> str | None:
    """Why the upstream configuration stops `role` from starting (every problem, with its
    path; keys are never part of it), or None."""
    from prepshelf.domain.upstreams import UpstreamConfigError
    from prepshelf.upstream_config import load_upstreams

    try:
        load_upstreams(settings)
    except UpstreamConfigError as exc:
        return f"prepshelf {role}: {exc}"
    return None


def _metrics_dir(settings: Settings, *, wipe: bool = False) -> None:
    # Before anything imports prometheus_client: it picks multiprocess storage at import.
    from prepshelf.metrics import use_multiproc_dir

    use_multiproc_dir(settings.metrics_dir or settings.data_dir / "metrics", wipe=wipe)


def _load_or_create_key(data_dir: Path) -> tuple[str, bool]:
    path = data_dir / "api_key"
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "sk-prepshelf-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, True


def cmd_serve(args: argparse.Namespace) -> int:
    from prepshelf.embedded import EmbeddedPostgres
    from prepshelf.store.migrate import apply_migrations
    from prepshelf.supervisor import Supervisor, child_env

    settings = _settings(args)
    refusal = _upstreams_refusal(settings, "serve")
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _metrics_dir(settings, wipe=True)
    embedded = None
    url = settings.database_url
    if not url:
        embedded = EmbeddedPostgres(settings.pg_dir)
        url = embedded.start()
    try:
        apply_migrations(url)
        refusal = exposure_error("serve", settings, url, need_keys=False)
        if refusal:
            print(refusal, file=sys.stderr)
            return 2
        keys = settings.api_keys
        if not keys:
            key, created = _load_or_create_key(settings.data_dir)
            keys = [key]
            print(
                f"API key ({'new' if created else 'from'} {settings.data_dir / 'api_key'}): {key}",
                flush=True,
            )
        # Split the cores between worker processes instead of oversubscribing them.
        threads = settings.torch_threads or max(1, (os.cpu_count() or 1) // settings.workers)
        env = child_env(
            PREPSHELF_TORCH_THREADS=str(threads),
            PREPSHELF_DATABASE_URL=url,
            PREPSHELF_API_KEYS=",".join(keys),
            PREPSHELF_DATA_DIR=str(settings.data_dir),
            PREPSHELF_HOST=settings.host,
            PREPSHELF_PORT=str(settings.port),
        )
        listen_url = local_server.client_url(settings.host, settings.port)
        local_server.write(settings.data_dir, url=listen_url, pid=os.getpid())
        print(
            f"prepshelf serving on {listen_url}/v1 with {settings.workers} worker(s); "
            f"data in {settings.data_dir}",
            flush=True,
        )
        print(
            f"client commands find it with --data-dir {settings.data_dir} (or "
            "PREPSHELF_DATA_DIR): URL from server.json, key from api_key",
            flush=True,
        )
        return Supervisor(env, settings.workers).run()
    finally:
        local_server.remove(settings.data_dir, pid=os.getpid())
        if embedded is not None:
            embedded.stop()


def cmd_api(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _metrics_dir(settings)
    import uvicorn

    from prepshelf.api.app import create_app
    from prepshelf.api.server import uvicorn_options
    from prepshelf.store.migrate import apply_migrations

    if not settings.database_url:
        print("prepshelf api: set PREPSHELF_DATABASE_URL", file=sys.stderr)
        return 2
    refusal = _upstreams_refusal(settings, "api")
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    apply_migrations(settings.database_url)
    refusal = exposure_error("api", settings, settings.database_url, need_keys=True)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), **uvicorn_options(settings))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _metrics_dir(settings)
    from prepshelf.jobs.worker import run_worker
    from prepshelf.store.migrate import apply_migrations

    if not settings.database_url:
        print("prepshelf worker: set PREPSHELF_DATABASE_URL", file=sys.stderr)
        return 2
    refusal = _upstreams_refusal(settings, "worker")
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    apply_migrations(settings.database_url)
    asyncio.run(run_worker(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prepshelf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="embedded PostgreSQL + API + workers on one machine")
    serve.add_argument("--host", help="bind address [PREPSHELF_HOST, default 127.0.0.1]")
    serve.add_argument("--port", type=int, help="port [PREPSHELF_PORT, default 8000]")
    serve.add_argument("--data-dir", type=Path, help="data directory [PREPSHELF_DATA_DIR]")
    serve.add_argument("--workers", type=int, help="worker processes [PREPSHELF_WORKERS, 1]")
    serve.set_defaults(func=cmd_serve)

    api = sub.add_parser("api", help="run the API against PREPSHELF_DATABASE_URL")
    api.add_argument("--host", help="bind address [PREPSHELF_HOST, default 127.0.0.1]")
    api.add_argument("--port", type=int, help="port [PREPSHELF_PORT, default 8000]")
    api.add_argument("--data-dir", type=Path, help="data directory (blobs) [PREPSHELF_DATA_DIR]")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run one worker against PREPSHELF_DATABASE_URL")
    worker.add_argument("--data-dir", type=Path, help="data directory (blobs) [PREPSHELF_DATA_DIR]")
    worker.set_defaults(func=cmd_worker)
    add_client_commands(sub)
    add_eval_commands(sub)
    add_keys_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()
    except ValidationError:
        logs.setup()  # the command that needs the bad setting reports it
    else:
        logs.setup(settings.log_level, settings.log_format)
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
