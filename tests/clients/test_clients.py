"""LangChain, LlamaIndex and litellm, with the settings their users leave at the default,
against a live prepshelf: the same vectors as the plain-string path for short texts (whatever
the client sends: cl100k_base token ids, strings, 1,000 inputs a request), sensible vectors for
texts past the model's window, and a retrieval round trip against the server's own index."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from support.corpus import CORPUS, needs_corpus
from support.service import Service

# Clients' vectors are compared with the server's own: the real model, not the fake.
pytestmark = [needs_corpus, pytest.mark.real_model]

MODEL = "all-MiniLM-L6-v2"
# run_client(client name, texts, query) -> (a vector per text, the query's, LangChain's requests)
RunClient = Callable[..., tuple[list[list[float]], list[float], list[dict[str, Any]]]]

CLIENTS = [
    "langchain",
    "langchain_strings",
    "langchain_async",
    "llamaindex",
    "llamaindex_like",
    "litellm",
    "litellm_dimensions",
]
QUERY = "All human beings are born free and equal in dignity and rights"


def udhr_lines(n: int) -> list[str]:
    """Short texts in many scripts (Latin, CJK, Cyrillic, Arabic, Devanagari, ...)."""
    text = (CORPUS / "UDHR_first_article_all.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 40]
    return lines[:n]


def plain(service: Service, texts: list[str]) -> np.ndarray:
    """The server's vectors for plain strings, 256 per call, through the official SDK."""
    client = service.openai()
    rows: list[list[float]] = []
    for at in range(0, len(texts), 256):
        got = client.embeddings.create(
            model=MODEL, input=texts[at : at + 256], encoding_format="float"
        )
        rows += [d.embedding for d in got.data]
    return np.asarray(rows)


def cosines(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a = a.reshape(-1, a.shape[-1])
    b = b.reshape(-1, b.shape[-1])
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("client", CLIENTS)
def test_short_texts_equal_the_plain_string_path(
    client: str, service: Service, run_client: RunClient
) -> None:
    texts = [
        "hello world",
        "parental leave",
        "Tabs\tand\nnew lines, “quotes” and emoji 😀 survive the round trip.",
        *udhr_lines(40),
    ]
    vectors, query, sent = run_client(client, texts, QUERY)
    if client in ("langchain", "langchain_async"):
        assert sent and all(r["token_ids"] for r in sent)  # tiktoken cl100k_base ids
    assert len(vectors) == len(texts) and all(len(v) == 384 for v in vectors)
    assert cosines(vectors, plain(service, texts)).min() >= 0.999
    assert cosines(query, plain(service, [QUERY]))[0] >= 0.999


@pytest.fixture(scope="module")
def long_texts(service: Service) -> tuple[list[str], np.ndarray]:
    """Texts past the model's 254-token window, the first (9,334 cl100k tokens) also past
    LangChain's own 8,191, and the server's own vectors for them (computed once)."""
    spec = (CORPUS / "commonmark-spec.md").read_text(encoding="utf-8")
    udhr = (CORPUS / "UDHR_first_article_all.txt").read_text(encoding="utf-8")
    texts = [spec[:30_000], udhr[:8_000], spec[60_000:62_000]]
    return texts, plain(service, texts)


@pytest.mark.parametrize("client", ["langchain", "langchain_strings", "llamaindex", "litellm"])
def test_long_texts_get_sensible_vectors(
    client: str, long_texts: tuple[list[str], np.ndarray], run_client: RunClient
) -> None:
    """Past the model's window (and, for the first, past LangChain's own window, which it
    splits and averages itself): one unit vector per text, close to the server's own for the
    same text and far from another text's."""
    texts, own = long_texts
    vectors, _, _ = run_client(client, texts)
    got = np.asarray(vectors)
    assert got.shape == (3, 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
    same = cosines(got, own)
    assert same.min() >= 0.97, same  # LangChain's own averaging differs a little from ours
    if client != "langchain":  # strings: exactly the server's split
        assert same.min() >= 0.999, same
    other = cosines(got[0], own[1])[0]
    assert other < same[0] - 0.1, (other, same)


@pytest.mark.parametrize("client", ["langchain", "litellm"])
def test_openai_sized_batches_are_accepted(
    client: str, service: Service, run_client: RunClient
) -> None:
    """LangChain sends 1,000 inputs a request by default; litellm sends what it is given."""
    n = 1100 if client == "langchain" else 300
    texts = [f"Policy note {i}: requests for leave go to the team lead." for i in range(n)]
    vectors, _, sent = run_client(client, texts)
    assert len(vectors) == n
    if client == "langchain":
        assert [r["inputs"] for r in sent[:2]] == [1000, 100]
    assert cosines(vectors, plain(service, texts)).min() >= 0.999


@pytest.fixture(scope="module")
def indexed(service: Service) -> dict[str, Any]:
    """A few corpus documents ingested by the server's workers: its chunks and vectors."""
    client = service.openai()
    store = client.vector_stores.create(name="clients-roundtrip")
    names = ["project-governance.md", "codeblock.md", "minimal-document.pdf"]
    files = [(name, io.BytesIO((CORPUS / name).read_bytes())) for name in names]
    batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=files)
    assert batch.file_counts.completed == len(names), batch
    with service.db() as db:
        rows = db.execute(
            """SELECT file_id, chunk_index, text, embedding::text AS embedding FROM chunks
               WHERE vector_store_id = %s ORDER BY file_id, chunk_index""",
            [store.id],
        ).fetchall()
    assert len(rows) >= 5
    return {
        "store_id": store.id,
        "texts": [r["text"] for r in rows],
        "keys": [(r["file_id"], r["chunk_index"]) for r in rows],
        "vectors": np.asarray(
            [[float(x) for x in r["embedding"].strip("[]").split(",")] for r in rows]
        ),
    }


@pytest.mark.parametrize("client", ["langchain", "llamaindex"])
@pytest.mark.parametrize(
    "query", ["Who decides on the project roadmap?", "lorem ipsum dolor", "fenced code block"]
)
def test_retrieval_round_trip_through_the_client(
    client: str, query: str, service: Service, run_client: RunClient, indexed: dict[str, Any]
) -> None:
    """Embed the corpus chunks and the query with the client (no vector store of its own),
    rank by cosine: the same vectors as the server stored, the same top hit as its search."""
    vectors, query_vector, _ = run_client(client, indexed["texts"], query)
    assert cosines(vectors, indexed["vectors"]).min() >= 0.999
    scores = indexed["vectors"] @ np.asarray(query_vector)
    best = indexed["keys"][int(np.argmax(scores))]
    hits = service.openai().vector_stores.search(
        vector_store_id=indexed["store_id"], query=query, max_num_results=1
    )
    top = next(iter(hits))
    assert top.file_id == best[0]
    assert top.content[0].text == indexed["texts"][indexed["keys"].index(best)]
