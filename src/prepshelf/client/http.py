"""Where the server is, which key to send, and the HTTP plumbing every command shares."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from prepshelf import local_server

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The server refused a call; the message is the server's own (OpenAI error shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ClientConfig:
    url: str
    api_key: str | None = field(repr=False)
    # Where each came from (never the key itself), for error messages.
    url_from: str = field(default="the default", compare=False)
    key_from: str | None = field(default=None, compare=False)

    def server(self) -> str:
        """The server tried, and why that one: for every error message."""
        return f"{self.url} (from {self.url_from})"

    def hint(self, status: int | None = None) -> str:
        """What to try next after a refused key or an unreachable server."""
        if status == 401:
            sent = f"the key from {self.key_from}" if self.key_from else "no key"
            return (
                f"; sent {sent}. Pass the data dir the server runs with (--data-dir / "
                "PREPSHELF_DATA_DIR: its api_key is read) or --api-key / PREPSHELF_API_KEY"
            )
        if status is None:
            return (
                "; is the server running? `prepshelf serve` writes its URL into its data dir: "
                "pass --data-dir (or PREPSHELF_DATA_DIR), or --url / PREPSHELF_URL"
            )
        return ""


def data_dir_of(data_dir: Path | str | None = None) -> Path:
    """--data-dir, else PREPSHELF_DATA_DIR, else the default data dir of `prepshelf serve`."""
    if data_dir:
        return Path(data_dir)
    if os.environ.get("PREPSHELF_DATA_DIR"):
        return Path(os.environ["PREPSHELF_DATA_DIR"])
    import platformdirs

    return Path(platformdirs.user_data_dir("prepshelf"))


def _local_key(data_dir: Path) -> str | None:
    """The key `prepshelf serve` wrote into its data dir."""
    try:
        return (data_dir / "api_key").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def resolve_config(
    url: str | None = None, api_key: str | None = None, data_dir: Path | str | None = None
) -> ClientConfig:
    """URL: --url, PREPSHELF_URL, the data dir's server.json, the default. Key: --api-key,
    PREPSHELF_API_KEY, the data dir's api_key. Each says where it came from."""
    folder = data_dir_of(data_dir)
    if url:
        base, url_from = url, "--url"
    elif os.environ.get("PREPSHELF_URL"):
        base, url_from = os.environ["PREPSHELF_URL"], "PREPSHELF_URL"
    elif (server := local_server.read(folder)) is not None:
        base, url_from = server.url, str(server.path)
        if not server.running:
            url_from += f", written by prepshelf serve pid {server.pid}, which is not running"
    else:
        base, url_from = DEFAULT_URL, f"the default; no {folder / local_server.FILE_NAME}"
    base = base.rstrip("/").removesuffix("/v1")  # accept the SDK-style base URL too
    key: str | None
    key_from: str | None
    if api_key:
        key, key_from = api_key, "--api-key"
    elif os.environ.get("PREPSHELF_API_KEY"):
        key, key_from = os.environ["PREPSHELF_API_KEY"], "PREPSHELF_API_KEY"
    else:
        key = _local_key(folder)
        key_from = str(folder / "api_key") if key else None
    return ClientConfig(url=base, api_key=key, url_from=url_from, key_from=key_from)


def _headers(config: ClientConfig) -> dict[str, str]:
    headers = {"User-Agent": "prepshelf-cli"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return headers


def async_client(config: ClientConfig, **kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("timeout", httpx.Timeout(60.0, connect=10.0))
    return httpx.AsyncClient(base_url=config.url, headers=_headers(config), **kwargs)


def check(response: httpx.Response) -> Any:
    """The JSON body of a successful response; ApiError with the server's message otherwise."""
    if response.is_success:
        return response.json()
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300] or response.reason_phrase
    raise ApiError(response.status_code, str(message))


async def iter_pages(
    client: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None, *, limit: int = 100
) -> AsyncIterator[dict[str, Any]]:
    """Every object of a list endpoint, following `after` cursors."""
    query = {k: v for k, v in (params or {}).items() if v is not None}
    query["limit"] = limit
    while True:
        page = check(await client.get(path, params=query))
        for item in page["data"]:
            yield item
        if not page.get("has_more") or not page["data"]:
            return
        query["after"] = page["data"][-1]["id"]


async def find_store(client: httpx.AsyncClient, name: str) -> dict[str, Any] | None:
    """The newest vector store with this exact name (names are not unique server-side)."""
    async for store in iter_pages(client, "/v1/vector_stores", {"order": "desc"}):
        if store.get("name") == name:
            return store
    return None
