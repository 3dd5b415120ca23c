"""Read the upstream configuration named by the settings, once per process, at start-up.

Two ways to give it (the same document, see `domain/upstreams.py` and `docs/upstreams.md`):

- `PREPSHELF_UPSTREAMS_FILE`: a TOML file (or JSON, by its `.json` suffix). The usual way: a
  list of servers with limits is configuration an operator edits and comments, and TOML is
  read by the standard library.
- `PREPSHELF_UPSTREAMS`: the document as JSON in the variable itself, for containers and
  orchestrators that configure by environment only.

Giving both is refused (one of them would be silently ignored). Keys are best given as the
name of another environment variable (`api_key_env`), which keeps them out of the file.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Collection, Mapping

from prepshelf.domain.upstreams import UpstreamConfig, UpstreamConfigError, parse_upstreams
from prepshelf.settings import Settings

_MAX_FILE_BYTES = 1024 * 1024


def local_embedding_model_id(settings: Settings) -> str:
    """The name of the embedding model the server serves itself (local or remote embedder):
    the default for embeddings, which no upstream model may take."""
    return settings.model_id if settings.embedder == "local" else settings.remote_embed_model


def load_upstreams(
    settings: Settings,
    *,
    reserved_model_ids: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> UpstreamConfig:
    """The configured upstreams (empty when none are configured).

    Raises UpstreamConfigError with every problem and where it is; callers at start-up turn
    it into a refusal to start. `reserved_model_ids`: names the server serves itself (by
    default the local embedding model's).
    """
    env = os.environ if environ is None else environ
    if reserved_model_ids is None:
        reserved_model_ids = {local_embedding_model_id(settings)}
    path, inline = settings.upstreams_file, settings.upstreams
    if path is not None and inline is not None:
        raise UpstreamConfigError(
            "PREPSHELF_UPSTREAMS_FILE and PREPSHELF_UPSTREAMS",
            ["give the upstream configuration in one of them, not both"],
        )
    if path is not None:
        source = f"PREPSHELF_UPSTREAMS_FILE={path}"
        try:
            size = path.stat().st_size
            if size > _MAX_FILE_BYTES:
                raise UpstreamConfigError(source, [f"the file is {size} bytes; at most 1 MiB"])
            raw = path.read_bytes()
        except OSError as exc:
            raise UpstreamConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
        data = _decode(raw, source, as_json=path.suffix.lower() == ".json")
    elif inline is not None and inline.strip():
        source = "PREPSHELF_UPSTREAMS"
        data = _decode(inline.encode(), source, as_json=True)
    else:
        return UpstreamConfig()
    return parse_upstreams(data, source=source, environ=env, reserved_model_ids=reserved_model_ids)


def _decode(raw: bytes, source: str, *, as_json: bool) -> object:
    try:
        text = raw.decode("utf-8")
        return json.loads(text) if as_json else tomllib.loads(text)
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {exc}"
    raise UpstreamConfigError(source, [problem])
