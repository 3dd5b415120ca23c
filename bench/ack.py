"""Upload acknowledgement against a raw loopback transfer of the same bytes, and API memory.

Starts the real front desk (embedded PostgreSQL and `prepshelf api`, tests/support) and two
null sinks in their own processes on loopback:

- `raw`: an asyncio socket server that reads the request head, reads Content-Length bytes,
  drops them and answers 200 — the raw transfer the target compares with;
- `asgi`: a bare ASGI app on uvicorn, the same server stack as the API, that reads the body
  and drops it — shows how much of the gap is the HTTP server and how much is prepshelf.

Each file (random bytes on disk) is posted as multipart (`file` + `purpose=assistants`) by one
httpx client streaming it from disk, as the openai SDK does; the time is from the start of
the request to the parsed response holding the id. Each server's CPU time per upload (all its
threads, from /proc) is shown too, less noisy than wall time on a shared machine, and so are
the API's event-loop thread alone (`api loop`: what keeps the front desk from other requests)
and the client's own CPU for the raw transfer (`cpu client`: on two cores the raw transfer is
mostly the client, and the API's work competes with it for the second core).
Targets alternate within each repetition so that machine noise hits them alike. During every
upload the API process's VmRSS is sampled
every 10 ms; the growth is the peak minus the value just before.

    python bench/ack.py [--sizes 10K 10M 300M] [--reps 5] [--json]

Target (issue #8): the acknowledgement within 1.2x the raw transfer time, and the API's
memory growth under 64 MB for a 300 MB file. A 10 KB upload is all fixed per-request cost
(auth, a database row), so its ratio is shown but the target is checked on the large sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import TestPostgres
from support.service import Service, free_port

TARGET_RATIO = 1.2
TARGET_GROWTH_MB = 64.0
_UNITS = {"K": 1000, "M": 1000**2, "G": 1000**3}
_SINK_REPLY = b'{"id":"sink","object":"file"}'


# --- null sinks (run in a child process: `ack.py --sink raw|asgi --port N`) -----------------


async def _raw_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while length:
                data = await reader.read(min(length, 1 << 20))
                if not data:
                    return
                length -= len(data)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(_SINK_REPLY)}\r\n\r\n".encode()
                + _SINK_REPLY
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve_raw(port: int) -> None:
    server = await asyncio.start_server(_raw_connection, "127.0.0.1", port, limit=1 << 20)
    async with server:
        await server.serve_forever()


async def _asgi_sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": _SINK_REPLY})


def run_sink(kind: str, port: int) -> None:
    if kind == "raw":
        asyncio.run(_serve_raw(port))
    else:
        import uvicorn

        uvicorn.run(_asgi_sink, host="127.0.0.1", port=port, log_level="warning")


class Sink:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/files"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sink:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", self.kind, "--port", str(self.port)]
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url, content=b"x", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} sink did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


# --- measuring --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    unit = text[-1].upper()
    return int(float(text[:-1]) * _UNITS[unit]) if unit in _UNITS else int(text)


def label(size: int) -> str:
    for unit, factor in (("G", 1000**3), ("M", 1000**2), ("K", 1000)):
        if size >= factor:
            return f"{size / factor:g} {unit}B"
    return f"{size} B"


def make_file(folder: Path, size: int) -> Path:
    """Random bytes (a repeated 1 MiB random block: incompressible enough, written fast)."""
    path = folder / f"upload-{size}.bin"
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        left = size
        while left:
            fh.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    return path


def vm_rss(pid: int) -> int:
    """Resident set size in bytes, from /proc (cheap enough to read every 10 ms)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RssPeak:
    """Samples a process's VmRSS every `interval_s` in a thread; `growth` = peak - before."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, vm_rss(self.pid))
            time.sleep(self.interval_s)

    def __enter__(self) -> RssPeak:
        self.before = self.peak = vm_rss(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, vm_rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.before


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float:
    """User + system CPU time of a process, all its threads (/proc/<pid>/stat, in ticks);
    with `main_thread`, of its main thread only (the one running the event loop)."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    with open(path, encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Upload:
    seconds: float  # from the start of the request to the parsed id
    client_cpu: float  # the client thread's CPU seconds for it
    file_id: str


def upload(client: httpx.Client, url: str, path: Path) -> Upload:
    with path.open("rb") as fh:
        started, cpu = time.perf_counter(), time.thread_time()
        response = client.post(url, files={"file": (path.name, fh)}, data={"purpose": "assistants"})
        response.raise_for_status()
        file_id = str(response.json()["id"])
        return Upload(time.perf_counter() - started, time.thread_time() - cpu, file_id)


@dataclass
class Row:
    size: int
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds, all reps
    growth: list[int] = field(default_factory=list)

    def cpu_ms(self, target: str) -> float:
        return self.cpu[target] / len(self.times["api"]) * 1e3

    def median(self, target: str) -> float:
        return statistics.median(self.times[target])

    def ratio(self, target: str = "raw") -> float:
        return self.median("api") / self.median(target)


def measure(
    svc: Service, sinks: list[Sink], files: dict[int, Path], reps: dict[int, int]
) -> list[Row]:
    assert svc.api is not None
    api_url = f"http://127.0.0.1:{svc.port}/v1/files"
    headers = {"Authorization": f"Bearer {svc.api_key}"}
    rows = []
    with httpx.Client(headers=headers, timeout=600) as client:
        smallest = files[min(files)]
        for url in [api_url, *(s.url for s in sinks)]:  # warm connections and lazy imports
            upload(client, url, smallest)
        for size, path in files.items():
            row = Row(size, {"api": [], **{s.kind: [] for s in sinks}})
            row.cpu = dict.fromkeys([*row.times, *(f"client {k}" for k in row.times)], 0.0)
            row.cpu["api loop"] = 0.0
            for _ in range(reps[size]):
                for sink in sinks:
                    assert sink.proc is not None
                    cpu = cpu_seconds(sink.proc.pid)
                    done = upload(client, sink.url, path)
                    row.cpu[sink.kind] += cpu_seconds(sink.proc.pid) - cpu
                    row.cpu[f"client {sink.kind}"] += done.client_cpu
                    row.times[sink.kind].append(done.seconds)
                cpu = cpu_seconds(svc.api.pid)
                loop_cpu = cpu_seconds(svc.api.pid, main_thread=True)
                with RssPeak(svc.api.pid) as rss:
                    done = upload(client, api_url, path)
                row.cpu["api"] += cpu_seconds(svc.api.pid) - cpu
                row.cpu["api loop"] += cpu_seconds(svc.api.pid, main_thread=True) - loop_cpu
                row.cpu["client api"] += done.client_cpu
                row.times["api"].append(done.seconds)
                row.growth.append(rss.growth)
                client.delete(f"{api_url}/{done.file_id}").raise_for_status()  # free the disk
            rows.append(row)
            print(f"{label(size)}: done", file=sys.stderr)
    return rows


def report(rows: list[Row], sinks: list[str]) -> dict[str, Any]:
    cols = "".join(f" {k + ' ms':>10}" for k in sinks)
    print(f"\n{'size':>8} {'reps':>4} {'api ms':>10}{cols} {'api/raw':>8} {'api/asgi':>9}", end="")
    cpu_cols = "".join(f" {'cpu ' + k:>9}" for k in ["api", "api loop", *sinks, "client"])
    print(f" {'MB/s api':>9} {'MB/s raw':>9}{cpu_cols} {'RSS +MB':>8}")
    out: dict[str, Any] = {"rows": []}
    for row in rows:
        medians = {k: row.median(k) for k in row.times}
        growth_mb = max(row.growth) / 1e6
        line = f"{label(row.size):>8} {len(row.times['api']):>4} {medians['api'] * 1e3:>10.1f}"
        line += "".join(f" {medians[k] * 1e3:>10.1f}" for k in sinks)
        line += f" {row.ratio('raw'):>7.2f}x"
        line += f" {row.ratio('asgi'):>8.2f}x" if "asgi" in sinks else f" {'':>9}"
        line += f" {row.size / medians['api'] / 1e6:>9.0f} {row.size / medians['raw'] / 1e6:>9.0f}"
        line += "".join(
            f" {row.cpu_ms(k):>9.1f}" for k in ["api", "api loop", *sinks, "client raw"]
        )
        line += f" {growth_mb:>8.1f}"
        print(line)
        out["rows"].append(
            {
                "bytes": row.size,
                "median_s": medians,
                "times_s": row.times,
                "cpu_ms_per_upload": {k: row.cpu_ms(k) for k in row.cpu},
                "ratio_raw": row.ratio("raw"),
                "ratio_asgi": row.ratio("asgi") if "asgi" in sinks else None,
                "rss_growth_bytes": row.growth,
            }
        )
    large = [r for r in rows if r.size >= 1000**2] or rows
    ratio_ok = all(r.ratio("raw") <= TARGET_RATIO for r in large)
    biggest = max(rows, key=lambda r: r.size)
    growth_ok = max(biggest.growth) / 1e6 < TARGET_GROWTH_MB
    print(
        f"\ntarget: ack <= {TARGET_RATIO}x raw for files >= 1 MB: "
        f"{'met' if ratio_ok else 'MISSED'} "
        f"({', '.join(f'{label(r.size)} {r.ratio():.2f}x' for r in large)})"
    )
    print(
        f"target: API memory growth < {TARGET_GROWTH_MB:.0f} MB at {label(biggest.size)}: "
        f"{'met' if growth_ok else 'MISSED'} ({max(biggest.growth) / 1e6:.1f} MB)"
    )
    out.update(ratio_target_met=ratio_ok, memory_target_met=growth_ok)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10K", "10M", "300M"])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per size (>= 1)")
    parser.add_argument("--small-reps", type=int, default=30, help="repetitions below 1 MB")
    parser.add_argument("--no-asgi", action="store_true", help="skip the uvicorn null sink")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--sink", choices=["raw", "asgi"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink, args.port)
        return

    sizes = sorted(parse_size(s) for s in args.sizes)
    reps = {s: args.small_reps if s < 1000**2 else args.reps for s in sizes}
    root = Path(tempfile.mkdtemp(prefix="prepshelf-ack-"))
    pg = svc = None
    sinks = [Sink("raw")] + ([] if args.no_asgi else [Sink("asgi")])
    try:
        files = {s: make_file(root, s) for s in sizes}
        pg = TestPostgres(root).start()
        svc = Service(pg.new_database(), root / "svc", workers=0).start()
        svc.wait_query_model()  # its background load would be measured as the uploads' cost
        for sink in sinks:
            sink.start()
        rows = measure(svc, sinks, files, reps)
    finally:
        for sink in sinks:
            sink.stop()
        if svc is not None:
            svc.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    result = report(rows, [s.kind for s in sinks])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
