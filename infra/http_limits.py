"""A bound on the request line and headers of every simfleet HTTP server.

uvicorn's httptools protocol reads a request head of any size (a 100 MB header was answered
200): this one counts the head's bytes as they arrive and answers 431 once they pass the limit,
before the head is handed to the app, so no authentication or routing work is done for it and no
more of it is held in memory than the limit and one read.
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 32 * 1024
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
)


class _HeadTooLarge(Exception):
    pass


class BoundedHeadProtocol(HttpToolsProtocol):
    """``max_head_bytes``: request line plus headers; set per server by ``bounded_protocol``.
    ``data_received`` is uvicorn's own, plus the count and without its warning for a refusal."""

    max_head_bytes = DEFAULT_MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # the head's url and headers as parsed
        self._raw_head_bytes = 0  # bytes fed while the head is incomplete (the parser holds them)
        self._in_head = True
        self._too_large = False

    def on_message_begin(self) -> None:
        self._head_bytes, self._raw_head_bytes, self._in_head = 0, 0, True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge  # stops the parser: uvicorn answers through send_400_response

    def data_received(self, data: bytes) -> None:
        if self._too_large:
            return
        try:
            self._unset_keepalive_if_required()
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._too_large:
                self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if self._in_head and not self._too_large:
            # an unfinished header stays inside the parser, uncounted by the callbacks
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > 2 * self.max_head_bytes:
                self._too_large = True
                self._refuse()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        message = f"request line and headers over {self.max_head_bytes} bytes".encode()
        self.transport.write(
            _REFUSAL + b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
        )
        self.transport.close()


def bounded_protocol(max_head_bytes: int) -> type[BoundedHeadProtocol]:
    return type("BoundedHead", (BoundedHeadProtocol,), {"max_head_bytes": max_head_bytes})
