"""Where the server is, which key to send, and the HTTP plumbing every command shares."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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


def _local_key() -> str | None:
    """The key `prepshelf serve` wrote into its data dir, when the server runs here."""
    data_dir = os.environ.get("PREPSHELF_DATA_DIR")
    if not data_dir:
        import platformdirs

        data_dir = platformdirs.user_data_dir("prepshelf")
    path = Path(data_dir) / "api_key"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def resolve_config(url: str | None = None, api_key: str | None = None) -> ClientConfig:
    base = (url or os.environ.get("PREPSHELF_URL") or DEFAULT_URL).rstrip("/")
    base = base.removesuffix("/v1")  # accept the SDK-style base URL too
    key = api_key or os.environ.get("PREPSHELF_API_KEY") or _local_key()
    return ClientConfig(url=base, api_key=key)


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
