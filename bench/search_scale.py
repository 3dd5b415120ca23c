"""Vector search at scale: p50/p99 latency of a top-10 search and recall@10 of the HNSW index.

What is measured is what a user gets: the schema comes from prepshelf's own migrations, and
every search goes through `store/search.py:search_chunks` on a pool from `store/db.py`, as
`POST /v1/vector_stores/{id}/search` calls it (without the query embedding and HTTP around
it). Single client; warm-up queries first. Recall@10: the index's top 10 against an exact
scan, i.e. the same call inside a transaction with index scans disabled (the plans are
checked: the first uses `chunks_hnsw_384`, the second does not). Filtered searches (an `eq`
attribute filter matching 10% and 1% of the files) are measured the same way.

Target (issue #8): p99 under 50 ms at 1,000,000 chunks with recall@10 at least 0.95.

Data (synthetic, seeded): 384-d unit vectors from a hierarchy of gaussians, not uniform
noise: 8 domains > N/250 topics (clipped to 400..4000, log-normal sizes) > files of 50
chunks > sections of 5 chunks > chunks, each level its centroid plus noise whose variance
falls off as a power law over a fixed random basis. The weights were fitted so that a
sample matches all-MiniLM-L6-v2 vectors of the dev corpus: pairwise cosine spread,
same-document similarity, nearest neighbours, how many directions hold the variance (see
DOMAINS below). A query is a random chunk plus noise (cosine about 0.65 to its best chunk,
as the corpus test questions have with the real model); --query-noise changes it. Files
are written in random topic order. Only statistics of a 740-chunk sample could be matched:
how hard 1,000,000 real chunks are for HNSW is not known from it, so recall here is an
estimate on data shaped like ours, not a measurement on real text.

Load: one vector store, N/50 files with `completed` vector_store_files rows (attributes
`tenant` 1 of 10, `shard` 1 of 100), chunks by binary COPY. The HNSW and full-text GIN
indexes are dropped before the load and rebuilt after it from the definitions the
migrations made (read back from pg_indexes), with `maintenance_work_mem` (--build-mem) and
`max_parallel_maintenance_workers` (--build-workers) set for the build; the build time is
reported. With --keep DIR the loaded databases stay in DIR and a rerun only measures; a
kept database gets later migrations applied first (timed), as an upgrade would.

Also: --ef-search 100,200,400 sweeps hnsw.ef_search (default: PREPSHELF_SEARCH_EF_SEARCH);
--hnsw-options 'm = 16, ef_construction = 64' measures a copy whose index has other build
options (what a new migration would set); --shared-buffers 3GB restarts the server with
that much cache (stays in a --keep dir; pass 128MB to go back to the default).

Run: `python bench/search_scale.py --sizes 20000,100000` (minutes);
     `nice -n 19 python bench/search_scale.py --sizes 1000000 --keep /tmp/bench-search-1m
     --load-only` (loads ~1.5 GB of vectors and builds the index once: 5 min load and
     10-25 min build on 2 busy cores), then without --load-only on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from prepshelf.embedded import EmbeddedPostgres
from prepshelf.ids import new_file_id, new_vector_store_id
from prepshelf.settings import Settings
from prepshelf.store.db import open_pool
from prepshelf.store.migrate import apply_migrations
from prepshelf.store.search import search_chunks

DIM = 384
CHUNKS_PER_FILE = 50
PROJECT = "proj_bench"
MODEL = "all-MiniLM-L6-v2"
REBUILT = ("chunks_hnsw_384", "chunks_text_tsv")  # dropped for the load, rebuilt after
TARGET_P99_MS, TARGET_RECALL, TARGET_SIZE = 50.0, 0.95, 1_000_000
FILTERS: list[tuple[str, dict[str, Any] | None]] = [
    ("none", None),
    ("10% of files", {"type": "eq", "key": "tenant", "value": "t3"}),
    ("1% of files", {"type": "eq", "key": "shard", "value": 42}),
]


# --- synthetic data -----------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# Fitted (random search) so that 770 chunks of 55 synthetic files match all-MiniLM-L6-v2
# vectors of 740 chunks (200 tokens) of the dev corpus's 55 documents. Real / synthetic:
# mean pairwise cosine 0.10 / 0.02, its 10th and 90th percentiles -0.04 and 0.26 / -0.12
# and 0.18, same-document mean 0.44 / 0.48, nearest neighbour 0.73 / 0.77, nearest in another
# document 0.42 / 0.37; principal components for 50/80/90% of the variance 18/79/130 /
# 20/75/127 (isotropic noise needs 32/116/184: real embeddings vary along fewer directions,
# so the noise has a power-law spectrum, `ALPHA`); corpus questions' best chunk 0.65 / 0.66.
DOMAINS = 8  # broad groups (language, genre) that make documents of one group alike
W_COMMON, W_DOMAIN = 0.21, 1.78  # weights of the shared direction and of the domain
S_TOPIC, S_FILE, S_SECTION, S_CHUNK = 1.46, 0.62, 1.16, 0.99  # noise norms per level
ALPHA = 0.79  # noise variance along the i-th direction of a fixed basis ~ i ** -ALPHA
SECTION = 5  # chunks per section
S_QUERY = 1.21  # query = chunk + this much noise (cosine about 0.65 to its best chunk)
DATA = "hier-aniso-v1"  # change with the generator: kept databases are then loaded again


@dataclass
class Mixture:
    """A seeded hierarchy of gaussians: domain > topic > file > section > chunk.

    Topic centroids are kept; each file's vectors are drawn on demand from a generator
    seeded by the file's number, so loading streams and queries can be rebuilt.
    """

    seed: int
    n: int
    topics: np.ndarray = field(init=False)
    file_topic: np.ndarray = field(init=False)
    shape: np.ndarray = field(init=False)  # noise = standard normal @ shape (anisotropic)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
        scale = np.arange(1, DIM + 1) ** (-ALPHA / 2)
        scale *= np.sqrt(DIM / np.sum(scale**2))  # E|noise|^2 = 1, as isotropic noise
        self.shape = ((scale[:, None] * basis.T) / np.sqrt(DIM)).astype(np.float32)
        k = int(np.clip(self.n // 250, 400, 4000))
        common = _unit(rng.standard_normal(DIM))
        domains = _unit(rng.standard_normal((DOMAINS, DIM)))
        domain_of = rng.integers(DOMAINS, size=k)
        self.topics = _unit(
            W_COMMON * common
            + W_DOMAIN * domains[domain_of]
            + S_TOPIC * rng.standard_normal((k, DIM)) @ self.shape
        )
        n_files = -(-self.n // CHUNKS_PER_FILE)
        weights = rng.lognormal(0.0, 1.0, k)  # a few big topics, many small ones
        self.file_topic = rng.choice(k, size=n_files, p=weights / weights.sum())

    def _noise(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        return rng.standard_normal((rows, DIM)).astype(np.float32) @ self.shape

    def file_vectors(self, file_no: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, file_no])
        centre = self.topics[self.file_topic[file_no]] + S_FILE * self._noise(rng, 1)
        sections = centre + S_SECTION * self._noise(rng, -(-count // SECTION))
        noise = S_CHUNK * self._noise(rng, count)
        return _unit(np.repeat(sections, SECTION, axis=0)[:count] + noise)

    def queries(self, count: int, noise: float = S_QUERY) -> np.ndarray:
        """Perturbed copies of random chunks (seeded apart from the data)."""
        rng = np.random.default_rng([self.seed, 1 << 40])
        out = []
        for _ in range(count):
            chunk = int(rng.integers(self.n))
            file_no, index = divmod(chunk, CHUNKS_PER_FILE)
            size = min(CHUNKS_PER_FILE, self.n - file_no * CHUNKS_PER_FILE)
            source = self.file_vectors(file_no, size)[index]
            out.append(_unit(source + noise * self._noise(rng, 1)[0]))
        return np.stack(out).astype(np.float32)


# --- loading ------------------------------------------------------------------------------


@dataclass
class Loaded:
    database: str
    store_id: str
    n: int
    seed: int
    load_s: float
    build_s: dict[str, float]
    build_mem: str
    build_workers: int
    data: str = ""  # DATA version the rows were made with; another one is loaded again
    migrated: dict[str, float] = field(default_factory=dict)  # later migrations, seconds
    hnsw_options: str = ""  # WITH (...) of a variant index (--hnsw-options); "" = migrations'


def _index_defs(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'"
    ).fetchall()
    return {name: ddl for name, ddl in rows if name in REBUILT}


def load(url: str, database: str, n: int, seed: int, mem: str, workers: int) -> Loaded:
    apply_migrations(url)
    mix = Mixture(seed, n)
    store_id = new_vector_store_id()
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        defs = _index_defs(conn)
        assert set(defs) == set(REBUILT), f"migrations define {sorted(defs)}"
        for name in defs:
            conn.execute(f"DROP INDEX {name}")
        started = time.monotonic()
        conn.execute(
            """INSERT INTO vector_stores (id, project_id, name, embedding_model, dimensions)
               VALUES (%s, %s, 'search-bench', %s, %s)""",
            [store_id, PROJECT, MODEL, DIM],
        )
        static = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}
        strategy = Jsonb({"type": "static", "static": static})
        n_files = len(mix.file_topic)
        file_ids = [new_file_id() for _ in range(n_files)]
        with conn.cursor() as cur:
            with cur.copy(
                "COPY files (id, project_id, filename, purpose, bytes, sha256, blob_key) FROM STDIN"
            ) as copy:
                for no, fid in enumerate(file_ids):
                    copy.write_row(
                        (fid, PROJECT, f"doc-{no}.txt", "assistants", 4096, "0" * 64, fid)
                    )
            with cur.copy(
                "COPY vector_store_files (vector_store_id, file_id, status, attributes, "
                "chunking_strategy, usage_bytes) FROM STDIN"
            ) as copy:
                for no, fid in enumerate(file_ids):
                    attrs = Jsonb({"tenant": f"t{no % 10}", "shard": no % 100, "n": no})
                    copy.write_row((store_id, fid, "completed", attrs, strategy, 4096))
            with cur.copy(
                "COPY chunks (vector_store_id, file_id, chunk_index, text, text_sha256, "
                "token_count, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "text", "int4", "text", "bytea", "int4", "vector"])
                for no, fid in enumerate(file_ids):
                    count = min(CHUNKS_PER_FILE, n - no * CHUNKS_PER_FILE)
                    vectors = mix.file_vectors(no, count)
                    topic = int(mix.file_topic[no])
                    for i in range(count):
                        text = f"synthetic chunk {i} of document {no} on topic {topic}"
                        digest = hashlib.sha256(text.encode()).digest()
                        copy.write_row((store_id, fid, i, text, digest, 12, vectors[i]))
                    if no % 2000 == 0:
                        print(f"  loaded {no * CHUNKS_PER_FILE:,}/{n:,} chunks", file=sys.stderr)
        conn.execute("VACUUM (ANALYZE) chunks")
        conn.execute("VACUUM (ANALYZE) vector_store_files")
        conn.execute("VACUUM (ANALYZE) files")
        load_s = time.monotonic() - started
        conn.execute(f"SET maintenance_work_mem = '{mem}'")
        conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        build_s: dict[str, float] = {}
        for name, ddl in defs.items():
            began = time.monotonic()
            conn.execute(ddl)
            build_s[name] = time.monotonic() - began
            print(f"  built {name} in {build_s[name]:.0f} s", file=sys.stderr)
        conn.execute("ANALYZE chunks")
    return Loaded(database, store_id, n, seed, load_s, build_s, mem, workers, DATA)


def variant(admin: str, base: Loaded, options: str, mem: str, workers: int) -> Loaded:
    """A copy of `base` whose HNSW index is rebuilt WITH (`options`), e.g. to try the
    m / ef_construction a new migration would set. Same name, expression and predicate."""
    slug = re.sub(r"[^a-z0-9]+", "_", options.lower()).strip("_")
    database = f"{base.database}_{slug}"
    began = time.monotonic()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database} TEMPLATE {base.database} STRATEGY FILE_COPY")
    copy_s = time.monotonic() - began
    with psycopg.connect(make_conninfo(admin, dbname=database), autocommit=True) as conn:
        ddl = _index_defs(conn)["chunks_hnsw_384"]
        head, where = ddl.split(" WHERE ", 1)
        conn.execute("DROP INDEX chunks_hnsw_384")
        conn.execute(f"SET maintenance_work_mem = '{mem}'")
        conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        began = time.monotonic()
        conn.execute(f"{head} WITH ({options}) WHERE {where}")
        build_s = time.monotonic() - began
        print(f"  built chunks_hnsw_384 WITH ({options}) in {build_s:.0f} s", file=sys.stderr)
    return Loaded(
        database,
        base.store_id,
        base.n,
        base.seed,
        copy_s,
        {**base.build_s, "chunks_hnsw_384": build_s},
        mem,
        workers,
        base.data,
        hnsw_options=options,
    )


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    index: str  # "migration" or the --hnsw-options of a variant
    filter: str
    ef_search: str
    plan: str  # what the planner chose for the indexed search
    p50_ms: float
    p99_ms: float
    mean_ms: float
    recall: float | None
    min_recall: float | None
    exact_ms: float | None
    hits: float  # mean results per query (fewer than 10: the filtered scan ran dry)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def _search(
    conn: Any, store_id: str, vector: np.ndarray, flt: Any, ef: int | None = None
) -> list[Any]:
    return await search_chunks(
        conn,
        store_id=store_id,
        dimensions=DIM,
        query_vector=vector,
        limit=10,
        filters=flt,
        score_threshold=0.0,
        **({} if ef is None else {"ef_search": ef}),
    )


async def _exact(conn: Any, store_id: str, vector: np.ndarray, flt: Any) -> list[Any]:
    """The same call with index scans off: an exact scan. `conn` must not prepare statements
    (a prepared statement's cached plan ignores the setting and would use the index)."""
    assert conn.prepare_threshold is None
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off")
        return await _search(conn, store_id, vector, flt)


async def _plan(
    conn: Any, store_id: str, vector: np.ndarray, flt: Any, exact: bool, ef: int | None = None
) -> str:
    """The plan search_chunks' own query ran with, from auto_explain sent back as a notice."""
    notices: list[str] = []

    def keep(diag: Any) -> None:
        if diag.message_primary and "Query Text" in diag.message_primary:
            notices.append(diag.message_primary)

    conn.add_notice_handler(keep)
    await conn.execute("LOAD 'auto_explain'")
    await conn.execute("SET auto_explain.log_min_duration = 0")
    await conn.execute("SET auto_explain.log_parameter_max_length = 0")
    await conn.execute("SET client_min_messages = log")
    try:
        if exact:
            await _exact(conn, store_id, vector, flt)
        else:
            await _search(conn, store_id, vector, flt, ef)
    finally:
        await conn.execute("SET auto_explain.log_min_duration = -1")
        await conn.execute("RESET client_min_messages")
        conn.remove_notice_handler(keep)
    plan = "\n".join(n for n in notices if "ORDER BY" in n)
    return re.sub(r"'\[[-+0-9.e,]+\]'", "'[…]'", plan)  # the query vector, 384 numbers


async def measure(
    url: str,
    loaded: Loaded,
    queries: np.ndarray,
    efs: list[int],
    filters: list[tuple[str, dict[str, Any] | None]],
    n_lat: int,
    n_recall: int,
    warmup: int,
) -> tuple[list[Row], dict[str, str]]:
    # The timed connection is configured as the API's (store/db.py), statement preparation
    # included: after a few runs psycopg prepares the search and the server may then use a
    # generic plan, as it does for users.
    pool = await open_pool(url, min_size=1, max_size=1)
    exact_pool = await open_pool(url, min_size=1, max_size=1)
    rows: list[Row] = []
    plans: dict[str, str] = {}
    store = loaded.store_id
    timed, checked = queries[warmup : warmup + n_lat], queries[warmup : warmup + n_recall]
    try:
        async with pool.connection() as conn, exact_pool.connection() as exact_conn:
            exact_conn.prepare_threshold = None
            for label, flt in filters:
                truths, exact_times = [], []
                for q in checked:
                    began = time.perf_counter()
                    truth = await _exact(exact_conn, store, q, flt)
                    exact_times.append((time.perf_counter() - began) * 1000)
                    truths.append({(h["file_id"], h["chunk_index"]) for h in truth})
                exact_plan = await _plan(exact_conn, store, queries[0], flt, exact=True)
                assert "chunks_hnsw_384" not in exact_plan, exact_plan
                plans[f"{label}, exact"] = exact_plan
                for ef in efs:
                    for q in queries[:warmup]:
                        await _search(conn, store, q, flt, ef)
                    times, counts = [], []
                    for q in timed:
                        began = time.perf_counter()
                        hits = await _search(conn, store, q, flt, ef)
                        times.append((time.perf_counter() - began) * 1000)
                        counts.append(len(hits))
                    # The plan the timed searches ran with (prepared by now, if ever).
                    plan = await _plan(conn, store, queries[0], flt, exact=False, ef=ef)
                    plans[f"{label}, ef {ef}"] = plan
                    recalls = []
                    for q, want in zip(checked, truths, strict=True):
                        hits = await _search(conn, store, q, flt, ef)
                        got = {(h["file_id"], h["chunk_index"]) for h in hits}
                        recalls.append(len(got & want) / max(1, len(want)))
                    rows.append(
                        Row(
                            n=loaded.n,
                            index=loaded.hnsw_options or "migration",
                            filter=label,
                            ef_search=str(ef),
                            plan="hnsw" if "chunks_hnsw_384" in plan else "no index",
                            p50_ms=_pct(times, 50),
                            p99_ms=_pct(times, 99),
                            mean_ms=statistics.fmean(times),
                            recall=statistics.fmean(recalls) if recalls else None,
                            min_recall=min(recalls) if recalls else None,
                            exact_ms=statistics.median(exact_times) if exact_times else None,
                            hits=statistics.fmean(counts),
                        )
                    )
                    print(f"  {loaded.n:,} chunks, filter {label}, ef {ef}: done", file=sys.stderr)
    finally:
        await pool.close()
        await exact_pool.close()
    return rows, plans


# --- driver -------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def _migrate_kept(admin: str, loaded: Loaded, mem: str, workers: int) -> dict[str, float]:
    """Bring a kept database to the current schema as an upgrade would (e.g. an index rebuilt
    by a new migration), with the build memory the load uses; seconds per migration."""
    options = f"-c maintenance_work_mem={mem} -c max_parallel_maintenance_workers={workers}"
    url = make_conninfo(admin, dbname=loaded.database, options=options)
    began = time.monotonic()
    applied = apply_migrations(url)
    if applied:
        seconds = time.monotonic() - began
        print(f"  {loaded.database}: applied {applied} in {seconds:.0f} s", file=sys.stderr)
        return {name: seconds / len(applied) for name in applied}
    return {}


def _set_shared_buffers(
    server: EmbeddedPostgres, admin: str, value: str
) -> tuple[EmbeddedPostgres, str]:
    """ALTER SYSTEM (kept in the data dir) and restart, so the index can live in PostgreSQL's
    own cache (docs/deploy.md: size memory so the HNSW index fits) instead of the OS's."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{value}'")
    server.stop()
    fresh = EmbeddedPostgres(server.pg_dir)
    admin = fresh.start()
    with psycopg.connect(admin) as conn:
        now = conn.execute("SHOW shared_buffers").fetchone()
    if now is None or now[0].replace(" ", "").lower() != value.replace(" ", "").lower():
        print(f"shared_buffers is {now}: another process holds the server", file=sys.stderr)
    return fresh, admin


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    state_file = root / "state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    server = EmbeddedPostgres(root / "postgres")
    admin = server.start()
    if args.shared_buffers:
        server, admin = _set_shared_buffers(server, admin, args.shared_buffers)
    out: dict[str, Any] = {"sizes": {}, "rows": []}
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            settings = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("server_version", "shared_buffers", "effective_cache_size")
            }
            settings["pgvector"] = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()[0]  # type: ignore[index]
        out["server"] = settings
        for n in args.sizes:
            key = str(n)
            info = state.get(key)
            if info is None or info.get("seed") != args.seed or info.get("data") != DATA:
                database = f"bench_{n}"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {database}")
                    conn.execute(f"CREATE DATABASE {database}")
                print(f"loading {n:,} chunks into {database}", file=sys.stderr)
                loaded = load(
                    make_conninfo(admin, dbname=database),
                    database,
                    n,
                    args.seed,
                    args.build_mem,
                    args.build_workers,
                )
                state[key] = asdict(loaded)
                state_file.write_text(json.dumps(state, indent=1))
            loaded = Loaded(**state[key])
            migrated = _migrate_kept(admin, loaded, args.build_mem, args.build_workers)
            if migrated:
                state[key]["migrated"] = {**state[key].get("migrated", {}), **migrated}
                state_file.write_text(json.dumps(state, indent=1))
                loaded = Loaded(**state[key])
            if args.hnsw_options:
                key = f"{n} WITH ({args.hnsw_options})"
                known = state.get(key)
                if known is None or known.get("store_id") != loaded.store_id:
                    print(f"copying {n:,} chunks for {key}", file=sys.stderr)
                    state[key] = asdict(
                        variant(
                            admin, loaded, args.hnsw_options, args.build_mem, args.build_workers
                        )
                    )
                    state_file.write_text(json.dumps(state, indent=1))
                loaded = Loaded(**state[key])
            url = make_conninfo(admin, dbname=loaded.database)
            with psycopg.connect(url) as conn:
                sizes = conn.execute(
                    """SELECT pg_total_relation_size('chunks'),
                              pg_relation_size('chunks_hnsw_384')"""
                ).fetchone()
            assert sizes is not None
            out["sizes"][key] = {
                **asdict(loaded),
                "table_mb": sizes[0] / 2**20,
                "hnsw_mb": sizes[1] / 2**20,
            }
            if args.load_only:
                continue
            count = args.warmup + max(args.queries, args.recall)
            queries = Mixture(args.seed, n).queries(count, args.query_noise)
            rows, plans = asyncio.run(
                measure(
                    url,
                    loaded,
                    queries,
                    args.ef_search,
                    FILTERS if args.filters == "all" else FILTERS[:1],
                    args.queries,
                    args.recall,
                    args.warmup,
                )
            )
            out["sizes"][key]["plans"] = plans
            out["rows"] += [asdict(r) for r in rows]
    finally:
        server.stop()
    return out


def report(out: dict[str, Any]) -> None:
    srv = out["server"]
    print(
        f"\nPostgreSQL {srv['server_version']}, pgvector {srv['pgvector']}, "
        f"shared_buffers {srv['shared_buffers']}, effective_cache_size "
        f"{srv['effective_cache_size']}"
    )
    print(
        f"\n{'chunks':>10} {'hnsw index':<30} {'load s':>7} {'build s':>8} {'hnsw MB':>8} "
        f"{'table MB':>9}"
    )
    for s in out["sizes"].values():
        index = s.get("hnsw_options") or "migration"
        print(
            f"{s['n']:>10,} {index:<30} {s['load_s']:>7.0f} "
            f"{s['build_s']['chunks_hnsw_384']:>8.0f} {s['hnsw_mb']:>8.0f} {s['table_mb']:>9.0f}"
        )
    for s in out["sizes"].values():
        for name, seconds in (s.get("migrated") or {}).items():
            print(f"  {s['database']}: {name} applied to the kept data in {seconds:.0f} s")
    if not out["rows"]:
        return
    print(
        f"\n{'chunks':>10} {'hnsw index':<30} {'filter':<13} {'ef':>4} {'plan':<8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'mean':>6} {'recall@10':>9} {'min':>5} {'hits':>5} "
        f"{'exact ms':>8} {'speed-up':>8}"
    )
    for r in out["rows"]:
        recall = f"{r['recall']:.3f}" if r["recall"] is not None else "-"
        low = f"{r['min_recall']:.1f}" if r["min_recall"] is not None else "-"
        exact = f"{r['exact_ms']:.0f}" if r["exact_ms"] is not None else "-"
        speed = f"{r['exact_ms'] / r['p50_ms']:.0f}x" if r["exact_ms"] else "-"
        print(
            f"{r['n']:>10,} {r['index']:<30} {r['filter']:<13} {r['ef_search']:>4} "
            f"{r['plan']:<8} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['mean_ms']:>6.1f} "
            f"{recall:>9} {low:>5} {r['hits']:>5.1f} {exact:>8} {speed:>8}"
        )
    print(
        f"\ntarget: p99 < {TARGET_P99_MS:.0f} ms and recall@10 >= {TARGET_RECALL} "
        f"at {TARGET_SIZE:,} chunks (unfiltered)"
    )
    at_target = [r for r in out["rows"] if r["n"] == TARGET_SIZE and r["filter"] == "none"]
    for r in at_target:
        ok = r["p99_ms"] < TARGET_P99_MS and (r["recall"] or 0) >= TARGET_RECALL
        print(
            f"  {'MET' if ok else 'MISSED'} ({r['index']}, ef_search {r['ef_search']}): "
            f"p99 {r['p99_ms']:.1f} ms, recall@10 {r['recall']:.3f}"
        )
    if not at_target:
        print(f"  not checked: no run at {TARGET_SIZE:,} chunks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=_sizes, default=_sizes("100000,1000000"))
    parser.add_argument("--queries", type=int, default=500, help="timed queries per row [500]")
    parser.add_argument("--recall", type=int, default=100, help="queries checked exactly [100]")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--ef-search",
        type=_sizes,
        default=[Settings().search_ef_search],
        help="hnsw.ef_search values to measure, e.g. 40,100,200 [PREPSHELF_SEARCH_EF_SEARCH]",
    )
    parser.add_argument(
        "--query-noise",
        type=float,
        default=S_QUERY,
        help=f"query = chunk + noise of this norm [{S_QUERY}: cosine ~0.65 to its best chunk]",
    )
    parser.add_argument(
        "--filters", choices=["all", "none"], default="all", help="also filtered searches [all]"
    )
    parser.add_argument("--build-mem", default="3GB", help="maintenance_work_mem for the build")
    parser.add_argument("--build-workers", type=int, default=2, help="parallel build workers")
    parser.add_argument(
        "--hnsw-options",
        help="also build a copy whose HNSW index has these options, e.g. "
        "'m = 24, ef_construction = 128', and measure it instead (kept with --keep)",
    )
    parser.add_argument(
        "--shared-buffers",
        help="set PostgreSQL's shared_buffers (e.g. 4GB; restarts the server, and stays in "
        "a --keep dir) [the server's default, 128MB]",
    )
    parser.add_argument("--load-only", action="store_true", help="load and build, no queries")
    parser.add_argument("--keep", type=Path, help="keep the loaded databases here; reuse them")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        out = run(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
            out = run(Path(tmp), args)
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
