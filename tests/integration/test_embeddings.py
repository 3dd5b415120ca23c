"""POST /v1/embeddings through the official SDK: both encodings, usage, refusals, and vectors
equal to the ones the ingestion pipeline stored for the same text."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.tokenizer import load_tokenizer
from support.service import Service

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Lava flows after an eruption."]


def test_api_has_not_loaded_the_model_before_the_first_call(service: Service) -> None:
    assert service.api is not None
    maps = Path(f"/proc/{service.api.pid}/maps").read_text()
    assert "libtorch" not in maps


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


def test_token_id_input_equals_its_text(service: Service) -> None:
    tok = load_tokenizer(default_model_dir())
    ids = tok.encode("hello world", add_special_tokens=False).ids
    client = service.openai()
    by_ids = client.embeddings.create(model=MODEL, input=[ids], encoding_format="float")
    by_text = client.embeddings.create(model=MODEL, input="hello world", encoding_format="float")
    assert np.allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
    assert by_ids.usage.prompt_tokens == len(ids)


def test_dimensions_only_when_equal(service: Service) -> None:
    client = service.openai()
    ok = client.embeddings.create(model=MODEL, input="x", dimensions=384, encoding_format="float")
    assert len(ok.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="x", dimensions=64)
    assert info.value.body["param"] == "dimensions"  # type: ignore[index]


def test_unknown_model_is_model_not_found(service: Service) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        service.openai().embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "model_not_found"


def test_too_big_is_413_pointing_to_batches(service: Service) -> None:
    with service.http() as http:
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": ["word"] * 257})
        assert r.status_code == 413
        err = r.json()["error"]
        assert "/v1/batches" in err["message"] and err["param"] == "input"
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": "word " * 400})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "context_length_exceeded"
        r = http.post("/v1/embeddings", json={"model": MODEL, "input": [""]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        r = http.post("/v1/embeddings", content=b"{nope", headers={"content-type": "x"})
        assert r.status_code == 400


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
