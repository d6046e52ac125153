"""A local Kafka broker that keeps its data across a restart, for broker-restart tests.

The embedded broker (``infra.embedded.tansu``) keeps everything in memory, so restarting it loses
every topic. The same Tansu binary has one durable storage engine compiled in: S3. Here an S3
server (moto, in its own process, so it outlives the broker) holds the topics' records and
watermarks, the topic metadata and the consumer groups' committed offsets; Tansu killed and
started again on the same bucket and port finds them all, as a restarted Kafka finds its log
directory. Tansu coordinates its writes with conditional PUTs (``If-None-Match``/``If-Match``),
which moto honours.

Tansu reads the S3 location from ``AWS_ENDPOINT``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and needs ``AWS_ALLOW_HTTP=true`` for a plain
``http://`` endpoint (without it every storage call fails with "BadScheme"). It does not create
the bucket: topic creation fails until the bucket exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from infra.embedded.tansu import tansu_path
from infra.http import free_port

__all__ = ["DurableBroker", "S3Server"]

READY_TIMEOUT_S = 20.0


class S3Server:
    """moto's S3 API in a process of its own, with one bucket; state lives as long as it runs."""

    def __init__(self, log: Path, bucket: str = "tansu") -> None:
        self.log = log
        self.bucket = bucket
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited; see {self.log}")
            # moto does not check signatures: a plain PUT creates the bucket
            with contextlib.suppress(httpx.TransportError):
                if httpx.put(f"{self.endpoint}/{self.bucket}", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the S3 server did not answer in time; see {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            _end(self._proc, signal.SIGTERM)
            self._proc = None


class DurableBroker:
    """Tansu on a fixed port with its data in ``s3``: ``kill()`` then ``start()`` is a restart."""

    def __init__(self, s3: S3Server, log: Path) -> None:
        self.s3 = s3
        self.log = log
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self) -> None:
        """Starts the broker and returns once it answers Kafka requests."""
        assert not self.running, "already running"
        self._proc = self._spawn()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await self._answers():
            if self._proc.poll() is not None:
                raise RuntimeError(f"the broker exited (port {self.port} taken?); see {self.log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the broker did not answer in time; see {self.log}")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the broker gets no chance to flush or say goodbye to its clients."""
        if self._proc is not None:
            _end(self._proc, signal.SIGKILL)
            self._proc = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        listener = f"tcp://{self.bootstrap}"
        env = {
            **os.environ,
            "AWS_ENDPOINT": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": "simfleet-test",
            "AWS_SECRET_ACCESS_KEY": "simfleet-test",  # moto accepts any credentials
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        cmd = [str(tansu_path()), "broker", "--listener-url", listener]
        cmd += ["--advertised-listener-url", listener]
        cmd += ["--storage-engine", f"s3://{self.s3.bucket}/"]
        with self.log.open("ab") as out:
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip

    async def _answers(self) -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
        try:
            await asyncio.wait_for(admin.start(), 3)
            await asyncio.wait_for(admin.list_topics(), 3)
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return True


def _end(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
