"""`<data_dir>/server.json`: where `prepshelf serve` listens, for the client commands.

`serve` writes it once it has started and removes it when it stops; `ingest`, `jobs` and
`search` read it from the data dir they are given (--data-dir / PREPSHELF_DATA_DIR), next to
the generated `api_key`, so a server on another port or data dir needs no --url or --api-key.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "server.json"


@dataclass(frozen=True)
class LocalServer:
    url: str  # base URL without /v1, e.g. http://127.0.0.1:8000
    pid: int  # the `prepshelf serve` process
    path: Path  # the file it was read from

    @property
    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by someone else
        return True


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to `host`."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"  # bound to every address: loopback is one of them
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write(data_dir: Path, *, url: str, pid: int) -> Path:
    path = data_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": pid}) + "\n", encoding="utf-8")
    tmp.replace(path)  # readers never see half a file
    return path


def read(data_dir: Path) -> LocalServer | None:
    path = data_dir / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LocalServer(url=str(data["url"]), pid=int(data["pid"]), path=path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(data_dir: Path, *, pid: int) -> None:
    """Remove the file if this process wrote it (another serve may have replaced it)."""
    found = read(data_dir)
    if found is not None and found.pid == pid:
        with contextlib.suppress(OSError):
            found.path.unlink()
