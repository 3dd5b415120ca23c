"""GET /v1/models with upstreams configured: every served model, through the official SDK, and
nothing about the upstreams themselves (URL, name, key, limits, upstream model names)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from support.service import Service

LOCAL = "all-MiniLM-L6-v2"
SECRET = "sk-gpu-cluster-9d1e7"
CONFIG = """
[upstreams.gpu-cluster-7]
base_url = "http://10.20.30.40:8000/v1"
api_key_env = "GPU_CLUSTER_KEY"
endpoints = ["/v1/chat/completions", "/v1/completions"]
rpm = 600
tpm = 200000

[upstreams.gpu-cluster-7.models."llama-3.1-8b-instruct"]

[upstreams.gpu-cluster-7.models."whisper-large-v3"]
endpoints = ["/v1/audio/transcriptions"]
upstream_model = "Systran/faster-whisper-large-v3"

[upstreams.gpu-cluster-7.models."bge-m3"]
endpoints = ["/v1/embeddings"]
dimensions = 1024
"""


@pytest.fixture(scope="module")
def svc(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("models")
    config = Path(root / "upstreams.toml")
    config.write_text(CONFIG)
    with Service(
        database_url,
        root / "svc",
        workers=0,  # listing models needs no worker
        extra_env={
            "PREPSHELF_UPSTREAMS_FILE": str(config),
            "GPU_CLUSTER_KEY": SECRET,
            "PREPSHELF_QUERY_MODEL_PRELOAD": "false",
        },
    ) as service:
        yield service


def test_every_served_model_is_listed(svc: Service) -> None:
    client = svc.openai()
    models = {m.id: m.model_dump() for m in client.models.list()}
    assert list(models) == [LOCAL, "llama-3.1-8b-instruct", "whisper-large-v3", "bge-m3"]
    assert models[LOCAL]["served_by"] == "embedder"
    assert models[LOCAL]["endpoints"] == ["/v1/embeddings"]
    llama = models["llama-3.1-8b-instruct"]
    assert (llama["object"], llama["owned_by"], llama["type"], llama["served_by"]) == (
        "model",
        "prepshelf",
        "chat",
        "upstream",
    )
    assert llama["endpoints"] == ["/v1/chat/completions", "/v1/completions"]
    assert models["whisper-large-v3"]["type"] == "transcription"
    assert models["bge-m3"]["type"] == "embedding" and models["bge-m3"]["dimensions"] == 1024
    whisper = client.models.retrieve("whisper-large-v3")
    assert whisper.id == "whisper-large-v3" and whisper.created == int(
        (Path(svc.env["PREPSHELF_UPSTREAMS_FILE"])).stat().st_mtime
    )


def test_nothing_about_the_upstreams_is_shown(svc: Service) -> None:
    with svc.http() as http:
        listed = http.get("/v1/models").text
        single = http.get("/v1/models/llama-3.1-8b-instruct").text
    for text in (listed, single):
        for hidden in (SECRET, "10.20.30.40", "gpu-cluster-7", "Systran", "200000", "rpm"):
            assert hidden not in text


def test_unknown_models_list_what_is_served(svc: Service) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        svc.openai().models.retrieve("gpt-4o")
    assert info.value.code == "model_not_found"
    assert "`whisper-large-v3`" in str(info.value.message) and LOCAL in str(info.value.message)
