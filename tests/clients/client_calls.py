"""Runs inside .venv-clients (never the service's venv): one client library embeds texts
against a live prepshelf exactly as its users call it, with its default settings.

stdin: {"client", "base_url", "api_key", "model", "texts", "query"}; stdout: {"vectors",
"query_vector", "sent": what LangChain sent per request}. The tests in this folder start the
server and compare the vectors.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import httpx

Vectors = list[list[float]]
SENT: list[dict[str, Any]] = []  # what LangChain put on the wire, request by request


def _record(request: httpx.Request) -> None:
    inputs = json.loads(request.content or b"{}").get("input")
    SENT.append(
        {
            "inputs": len(inputs) if isinstance(inputs, list) else 1,
            "token_ids": isinstance(inputs, list) and isinstance(inputs[0], list),
        }
    )


async def _record_async(request: httpx.Request) -> None:
    _record(request)


def langchain(req: dict[str, Any], **options: Any) -> tuple[Vectors, list[float]]:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(
        model=req["model"],
        base_url=req["base_url"],
        api_key=req["api_key"],
        http_client=httpx.Client(event_hooks={"request": [_record]}),
        **options,
    )
    return emb.embed_documents(req["texts"]), emb.embed_query(req["query"])


def langchain_async(req: dict[str, Any]) -> tuple[Vectors, list[float]]:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(
        model=req["model"],
        base_url=req["base_url"],
        api_key=req["api_key"],
        http_async_client=httpx.AsyncClient(event_hooks={"request": [_record_async]}),
    )

    async def both() -> tuple[Vectors, list[float]]:
        return await emb.aembed_documents(req["texts"]), await emb.aembed_query(req["query"])

    return asyncio.run(both())


def llamaindex(req: dict[str, Any]) -> tuple[Vectors, list[float]]:
    from llama_index.embeddings.openai import OpenAIEmbedding

    # model_name= (model= refuses names that are not OpenAI's, client-side).
    emb = OpenAIEmbedding(model_name=req["model"], api_base=req["base_url"], api_key=req["api_key"])
    return emb.get_text_embedding_batch(req["texts"]), emb.get_query_embedding(req["query"])


def llamaindex_like(req: dict[str, Any]) -> tuple[Vectors, list[float]]:
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    emb = OpenAILikeEmbedding(
        model_name=req["model"], api_base=req["base_url"], api_key=req["api_key"]
    )
    return emb.get_text_embedding_batch(req["texts"]), emb.get_query_embedding(req["query"])


def litellm_embed(req: dict[str, Any], **options: Any) -> tuple[Vectors, list[float]]:
    import litellm

    def call(texts: list[str]) -> Vectors:
        out = litellm.embedding(
            model="openai/" + req["model"],
            input=texts,
            api_base=req["base_url"],
            api_key=req["api_key"],
            **options,
        )
        return [item["embedding"] for item in out.data]

    return call(req["texts"]), call([req["query"]])[0]


CLIENTS: dict[str, Callable[[dict[str, Any]], tuple[Vectors, list[float]]]] = {
    "langchain": langchain,  # default settings: tiktoken cl100k_base token ids
    "langchain_strings": lambda r: langchain(r, check_embedding_ctx_length=False),
    "langchain_async": langchain_async,
    "llamaindex": llamaindex,
    "llamaindex_like": llamaindex_like,
    "litellm": litellm_embed,
    # dimensions= is refused by litellm itself for non-OpenAI models unless drop_params.
    "litellm_dimensions": lambda r: litellm_embed(r, dimensions=384, drop_params=True),
}


def main() -> None:
    req = json.load(sys.stdin)
    vectors, query = CLIENTS[req["client"]](req)
    json.dump({"vectors": vectors, "query_vector": query, "sent": SENT}, sys.stdout)


if __name__ == "__main__":
    main()
