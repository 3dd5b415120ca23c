"""An Embedder backed by any OpenAI-compatible `POST /v1/embeddings` (OpenAI, vLLM, TEI, Ollama).

`embed()` is synchronous (workers call it from a thread) and splits its texts into sub-batches
sent by a small thread pool. Each vendor call is retried on timeouts, connection errors, 429 and
5xx with exponential backoff and jitter, never sooner than the vendor's Retry-After (the rules
of `http_retry`, shared with the upstream client). After
the last retry it raises TransientError (the job is requeued with backoff); answers that cannot
get better by retrying (400/401/403, wrong shape) raise a permanent FileProcessingError.
Messages name the endpoint, never the API key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from prepshelf.errors import FileProcessingError, TransientError
from prepshelf.pipeline.embed import VendorReport
from prepshelf.pipeline.http_retry import (
    backoff_delay,
    is_transient_status,
    parse_retry_after,
    snippet,
)

__all__ = ["RemoteEmbedder", "VendorReport", "parse_retry_after"]

log = logging.getLogger(__name__)


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None, retry_after_s: float | None) -> None:
        super().__init__(reason)
        self.status, self.retry_after_s = status, retry_after_s


class RemoteEmbedder:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimensions: int,
        max_input_tokens: int,
        api_key: str | None = None,
        batch_size: int = 64,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        count_tokens: Callable[[Sequence[str]], list[int]] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model_id = model
        self.dimensions = dimensions
        self.max_input_tokens = max_input_tokens
        self.batch_size = max(1, batch_size)
        self.retries = max(0, retries)
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._count_tokens = count_tokens
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            limits=httpx.Limits(max_connections=max(1, concurrency)),
        )
        self.cache_suffix = ""  # the vendor's own vectors, under the vendor's model id
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="embed-remote")
        self._local = threading.local()

    # --- Embedder protocol -------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        report = VendorReport()
        self._local.report = report
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        texts = list(texts)
        parts = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        results = list(self._pool.map(self._call_with_retries, parts))
        for _, part_report in results:
            report.add(part_report)
        out = np.concatenate([vectors for vectors, _ in results]).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0.0, 1.0, norms)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._count_tokens is None:
            raise NotImplementedError("no tokenizer configured for the remote embedder")
        return self._count_tokens(texts)

    @property
    def last_report(self) -> VendorReport | None:
        """The report of this thread's latest `embed()` call."""
        return getattr(self._local, "report", None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # --- one vendor call ---------------------------------------------------------------

    def _call_with_retries(self, texts: list[str]) -> tuple[np.ndarray, VendorReport]:
        report = VendorReport()
        attempt = 0
        while True:
            attempt += 1
            report.calls += 1
            try:
                return self._call(texts, attempt), report
            except _Retryable as fault:
                report.last_status, report.last_error = fault.status, str(fault)
                if attempt > self.retries:
                    raise self._gave_up(attempt, fault) from None
                report.retries += 1
                delay = self._delay(attempt, fault.retry_after_s)
                log.warning(
                    "embedding call to %s failed (%s), attempt %d; retrying in %.2f s",
                    self.url,
                    fault,
                    attempt,
                    delay,
                )
                self._sleep(delay)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        return backoff_delay(
            attempt,
            base_s=self.backoff_base_s,
            max_s=self.backoff_max_s,
            retry_after_s=retry_after_s,
        )

    def _gave_up(self, attempts: int, fault: _Retryable) -> TransientError:
        err = TransientError(
            f"embedding call to {self.url} failed after {attempts} attempts "
            f"(last HTTP status {fault.status or 'none'}: {fault})"
        )
        err.retry_after_s = fault.retry_after_s  # type: ignore[attr-defined]
        err.vendor_status = fault.status  # type: ignore[attr-defined]
        return err

    def _permanent(self, attempt: int, status: int | None, reason: str) -> FileProcessingError:
        return FileProcessingError(
            f"embedding call to {self.url} failed permanently on attempt {attempt} "
            f"(HTTP status {status or 'none'}): {reason}"
        )

    def _call(self, texts: list[str], attempt: int) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model_id, "input": texts, "encoding_format": "float"}
        try:
            resp = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})", None, None) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error ({type(exc).__name__}: {exc})", None, None) from exc
        status = resp.status_code
        if is_transient_status(status):
            raise _Retryable(
                f"HTTP {status}: {snippet(resp)}",
                status,
                parse_retry_after(resp.headers.get("retry-after")),
            )
        if status >= 300:
            raise self._permanent(attempt, status, snippet(resp))
        try:
            payload = resp.json()
            data = sorted(payload["data"], key=lambda d: d.get("index", 0))
            vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._permanent(attempt, status, f"malformed answer ({exc})") from exc
        if vectors.ndim != 2 or vectors.shape != (len(texts), self.dimensions):
            raise self._permanent(
                attempt,
                status,
                f"malformed answer: expected {len(texts)} vectors of {self.dimensions} "
                f"dimensions, got shape {vectors.shape}",
            )
        if not np.isfinite(vectors).all():
            raise self._permanent(attempt, status, "malformed answer: non-finite values")
        return vectors
