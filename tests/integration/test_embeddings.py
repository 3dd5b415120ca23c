"""POST /v1/embeddings and /v1/models through the official SDK: both encodings, usage,
cl100k token ids, OpenAI's limits, long inputs, refusals, and vectors equal to the ones the
ingestion pipeline stored for the same text."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from prepshelf.pipeline import cl100k
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedding_plan import plan_input
from prepshelf.pipeline.tokenizer import load_tokenizer
from support.service import Service

# About the served vectors themselves: the real model, not the fake backend.
pytestmark = pytest.mark.real_model

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Lava flows after an eruption."]


def test_api_loads_its_model_in_the_background_after_start(service: Service) -> None:
    """No request is needed (and none waits on start-up): /readyz reports the load."""
    assert service.api is not None
    deadline = time.monotonic() + 180
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"http://127.0.0.1:{service.port}/readyz", timeout=5).json()
        if status["query_model"]["status"] in ("ready", "failed"):
            break
        time.sleep(0.5)
    assert status["query_model"]["status"] == "ready", status
    assert status["query_model"]["model"] == MODEL and status["query_model"]["load_s"] > 0
    maps = Path(f"/proc/{service.api.pid}/maps").read_text()
    assert "libtorch" in maps  # loaded by the background thread, before any search


def test_float_and_base64_agree(service: Service) -> None:
    client = service.openai()
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert floats.object == "list" and floats.model == MODEL
    assert [d.index for d in floats.data] == [0, 1]
    assert all(len(d.embedding) == 384 for d in floats.data)
    b64 = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")
    for f, b in zip(floats.data, b64.data, strict=True):
        decoded = np.frombuffer(base64.b64decode(b.embedding), dtype="<f4")  # type: ignore[arg-type]
        assert np.array_equal(decoded, np.asarray(f.embedding, dtype=np.float32))
    # The SDK's default asks for base64 and decodes it itself.
    default = client.embeddings.create(model=MODEL, input=TEXTS)
    for f, d in zip(floats.data, default.data, strict=True):
        assert np.allclose(f.embedding, d.embedding, atol=1e-6)
    vec = np.asarray(floats.data[0].embedding)
    assert abs(np.linalg.norm(vec) - 1.0) < 1e-4


def test_usage_counts_model_tokens(service: Service) -> None:
    tok = load_tokenizer(default_model_dir())
    expected = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in TEXTS)
    got = service.openai().embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert got.usage.prompt_tokens == expected == got.usage.total_tokens


def test_cl100k_token_ids_equal_their_text(service: Service) -> None:
    """What LangChain sends by default: tiktoken cl100k_base ids (decoded, re-tokenized)."""
    ids = cl100k.encoding().encode("hello world")
    client = service.openai()
    by_ids = client.embeddings.create(model=MODEL, input=[ids], encoding_format="float")
    by_text = client.embeddings.create(model=MODEL, input="hello world", encoding_format="float")
    assert np.allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens  # the model's tokens
    with service.http() as http:
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": [[15339, 100265]]})
    assert r.status_code == 400 and "cl100k_base" in r.json()["error"]["message"]


def test_dimensions_only_when_equal(service: Service) -> None:
    client = service.openai()
    ok = client.embeddings.create(model=MODEL, input="x", dimensions=384, encoding_format="float")
    assert len(ok.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="x", dimensions=64)
    assert info.value.body["param"] == "dimensions"  # type: ignore[index]


def test_unknown_model_is_model_not_found_naming_the_served_one(service: Service) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        service.openai().embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "model_not_found"
    assert f"`{MODEL}`" in str(info.value.message)


def test_models_list_and_retrieve_in_openais_shape(service: Service) -> None:
    client = service.openai()
    models = list(client.models.list())
    assert [m.id for m in models] == [MODEL]
    model = client.models.retrieve(MODEL)
    assert model.object == "model" and model.owned_by == "prepshelf"
    assert isinstance(model.created, int) and model.created > 0
    extra = model.model_dump()
    assert extra["dimensions"] == 384 and extra["max_input_tokens"] == 254
    assert extra["token_ids"] == "cl100k_base" and extra["long_input"] == "split"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.code == "model_not_found" and MODEL in str(info.value.message)
    with httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as anonymous:
        assert anonymous.get("/v1/models").status_code == 401


def test_openai_sized_requests_are_accepted(service: Service) -> None:
    """2,048 inputs in one call (LangChain sends 1,000; OpenAI allows 2,048)."""
    texts = [f"note {i}" for i in range(2048)]
    client = service.openai()
    got = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert len(got.data) == 2048 and [d.index for d in got.data] == list(range(2048))
    single = client.embeddings.create(model=MODEL, input=texts[2047], encoding_format="float")
    assert np.allclose(got.data[2047].embedding, single.data[0].embedding, atol=1e-5)


def test_over_openais_limits_is_400_as_openai_words_it(service: Service) -> None:
    with service.http() as http:
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": ["word"] * 2049})
        assert r.status_code == 400
        err = r.json()["error"]
        assert "2049 inputs, at most 2048" in err["message"] and err["param"] == "input"
        assert "/v1/batches" in err["message"]
        # 300,001 cl100k ids: counted as sent, refused before anything is embedded.
        ids = cl100k.encoding().encode(" hello") * 100_000
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": [ids, ids, [*ids, 15339]]})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == err["type"] == "max_tokens_per_request"
        assert err["message"].startswith("Requested 300001 tokens, max 300000 tokens per request")
        r = http.post(
            "/v1/embeddings",
            content=b'{"model": "x", "input": "' + b"a" * (9 * 1024 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": [""]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        r = http.post("/v1/embeddings", content=b"{nope", headers={"content-type": "x"})
        assert r.status_code == 400
        # A lone surrogate is valid JSON but no text: a 400, never a 500.
        lone = b'{"model": "all-MiniLM-L6-v2", "input": ["ok", "a\\ud800b"]}'
        r = http.post("/v1/embeddings", content=lone, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "input[1]" in r.json()["error"]["message"]


def test_a_long_input_is_the_weighted_mean_of_its_window_pieces(service: Service) -> None:
    tok = load_tokenizer(default_model_dir())
    text = " ".join(
        f"Clause {i}: employees may take parental leave after the birth of a child."
        for i in range(60)
    )
    encoding = tok.encode(text, add_special_tokens=False)
    assert len(encoding.ids) > 3 * 254
    plan = plan_input(text, encoding, window=254, policy="split", index=0)
    client = service.openai()
    whole = client.embeddings.create(model=MODEL, input=text, encoding_format="float")
    assert whole.usage.prompt_tokens == len(encoding.ids)  # every token was embedded
    parts = client.embeddings.create(model=MODEL, input=list(plan.pieces), encoding_format="float")
    vectors = np.asarray([d.embedding for d in parts.data], dtype=np.float64)
    mean = (vectors * np.asarray(plan.weights, dtype=np.float64)[:, None]).sum(axis=0)
    got = np.asarray(whole.data[0].embedding)
    assert np.allclose(got, mean / np.linalg.norm(mean), atol=1e-5)
    assert abs(np.linalg.norm(got) - 1.0) < 1e-5


def test_vectors_equal_the_ingested_chunks(service: Service) -> None:
    client = service.openai()
    text = "Apples are crunchy fruit grown in orchards. Granny Smith apples are green and tart."
    fid = client.files.create(file=("apples.txt", io.BytesIO(text.encode())), purpose="assistants")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=client.vector_stores.create(name="eq").id, file_ids=[fid.id]
    )
    assert batch.file_counts.completed == 1, batch
    with service.db() as db:
        rows: list[dict[str, Any]] = db.execute(
            "SELECT text, embedding FROM chunks WHERE file_id = %s ORDER BY chunk_index",
            [fid.id],
        ).fetchall()
    assert rows
    got = client.embeddings.create(
        model=MODEL, input=[r["text"] for r in rows], encoding_format="float"
    )
    for row, d in zip(rows, got.data, strict=True):
        stored = np.asarray([float(x) for x in str(row["embedding"]).strip("[]").split(",")])
        assert np.allclose(stored, d.embedding, atol=1e-5)
