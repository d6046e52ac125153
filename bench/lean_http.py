"""A lean HTTP/1.1 client for a load generator that shares the cores with what it measures:
keep-alive connections, each request one prebuilt ``bytes`` write, answers read by a small
parser (status line, ``Content-Length`` bodies: what uvicorn sends for simfleet's JSON answers).
An aiohttp client session spends several times its CPU per request on what this leaves out
(cookies, redirects, URL objects, header multidicts, response objects).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self._buffer[:head_end])
        end = head_end + 4 + _content_length(head)
        if len(self._buffer) < end:
            return
        body = bytes(self._buffer[head_end + 4 : end])
        del self._buffer[:end]
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((int(head[9:12]), body))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self._transport is None or self.lost:
            raise ConnectionError("not connected")
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"an answer without Content-Length: {head[:200]!r}")


# uvicorn closes a connection idle for 5 s; one reused just as it does fails its request
REUSE_WITHIN_S = 2.0


class LeanHttp:
    """POSTs to one server over at most ``limit`` keep-alive connections (opened as needed);
    a request finding none free waits for one."""

    def __init__(self, base_url: str, headers: Mapping[str, str], limit: int = 256) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"plain http://host:port only, not {base_url!r}")
        self._host, self._port = url.hostname, url.port or 80
        self._prefix = url.path.rstrip("/")
        fixed = {"Host": f"{self._host}:{self._port}", **headers}
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._limit = limit
        self._opened = 0
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []

    @property
    def opened(self) -> int:
        """Connections open now."""
        return self._opened

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of the answer."""
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\n{self._headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        connection = await self._checkout()
        try:
            return await connection.send(request)
        finally:
            if connection.lost:
                self._opened -= 1
            else:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.put_nowait(connection)

    async def _checkout(self) -> _Connection:
        now = asyncio.get_running_loop().time()
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if not connection.lost and now - connection.idle_since < REUSE_WITHIN_S:
                return connection
            connection.close()
            self._opened -= 1
        if self._opened >= self._limit:
            return await self._idle.get()
        self._opened += 1
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection, self._host, self._port
            )
        except OSError:
            self._opened -= 1
            raise
        self._all.append(connection)
        return connection

    async def __aenter__(self) -> LeanHttp:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for connection in self._all:
            connection.close()
