"""A real S3-compatible server on loopback for tests: moto's standalone server, as a process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from support.service import free_port

ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"


class MotoServer:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log_dir / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        with open(self._log, "wb") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.endpoint, timeout=1)
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not start:\n{self._log.read_text(errors='replace')}")

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def env(self, bucket: str, prefix: str) -> dict[str, str]:
        """PREPSHELF_* settings that point a service at `s3://bucket/prefix` on this server."""
        return {
            "PREPSHELF_BLOB_URL": f"s3://{bucket}/{prefix}",
            "PREPSHELF_S3_ENDPOINT_URL": self.endpoint,
            "PREPSHELF_S3_REGION": REGION,
            "PREPSHELF_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "PREPSHELF_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "PREPSHELF_S3_ADDRESSING_STYLE": "path",
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
