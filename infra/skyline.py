"""Skyline gateways (EXTERNAL_APIS §1.2, §1.3): send one SMS from a port; read the ports.

Credentials travel only as the ``username``/``password`` query parameters, as the gateway
wants them — never as a Basic-auth header (the original shipped that bug; gateways refuse it).
Every send is logged with the query redacted; httpx's own request log line (INFO on logger
``httpx``, which carries the URL) gets the same mask, so the password is in no log line.

A task status is ``"<code> <text>"``. Permanent refusals (1 Invalid User, 2 Invalid Port,
5 SIM Unregistered, 14 Unauthorized, malformed tasks) raise ``SkylineRejected``; transient ones
(6 Timeout, 7 Server Error, 16 Too Many Task, HTTP 5xx/429, timeouts, connection errors) raise
``SkylineUnavailable`` and are retried here with ``retry()``. Retries reuse the caller's
``tid``: if a lost answer hid an accepted task, the gateway answers "13 Duplicated TaskId",
which counts as accepted — the SMS is never sent twice by a retry.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import structlog

from events.types import normalize_e164
from infra.redaction import Redactor
from infra.retry import RetryPolicy, retry
from infra.settings import SkylineSettings

SEND_PATH = "/goip_post_sms.html"
STATUS_PATH = "/goip_get_status.html"
OK, DUPLICATE_TASK = 0, 13
RETRYABLE_CODES = frozenset({6, 7, 16})  # Timeout, Server Error, Too Many Task
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s\"'#]*", re.IGNORECASE)

T = TypeVar("T")
log = structlog.get_logger("simfleet.skyline")


class SkylineError(Exception):
    retryable = False

    def __init__(
        self, message: str, *, code: int | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.status_code = code, status_code


class SkylineRejected(SkylineError):
    """The gateway refused the task for good (credentials, port, SIM, malformed task)."""


class SkylineUnavailable(SkylineError):
    """Transient: the gateway is busy, timed out or answered 5xx; worth retrying."""

    retryable = True


@dataclass(frozen=True)
class TaskStatus:
    tid: int
    code: int
    text: str

    @property
    def accepted(self) -> bool:
        """Queued for sending (not yet delivered); a duplicate tid means an earlier try was."""
        return self.code in (OK, DUPLICATE_TASK)

    @classmethod
    def parse(cls, tid: int, raw: object) -> TaskStatus:
        code, _, text = str(raw).strip().partition(" ")
        if not code.lstrip("-").isdigit():
            raise SkylineUnavailable(f"unreadable task status {str(raw)[:60]!r}")
        return cls(tid, int(code), text.strip())


@dataclass(frozen=True)
class PortState:
    port: str
    status_code: int  # 3 = registered (ready)
    iccid: str | None = None
    number: str | None = None


def wire_number(number: str) -> str:
    """Numbers as the gateway takes them: digits without '+' (US numbers: 11 digits, 1…)."""
    return normalize_e164(number).removeprefix("+")


def mask_query_password(text: str) -> str:
    return _QUERY_PASSWORD.sub(r"\1***", text)


class _MaskQueryPasswords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_query_password(record.getMessage()), ()
        return True


def _mask_http_client_logs() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskQueryPasswords) for f in httpx_log.filters):
        httpx_log.addFilter(_MaskQueryPasswords())


class SkylineClient:
    """One per gateway, around an ``httpx.AsyncClient`` whose ``base_url`` is that gateway's
    ``http://host:port`` (``infra/gateway_clients.py`` keeps one per gateway)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: SkylineSettings,
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._http, self._settings = http, settings
        self._policy = policy or RetryPolicy(
            max_attempts=settings.max_retries + 1, base_delay_s=0.5, max_delay_s=5.0, budget_s=30.0
        )
        password = settings.password.get_secret_value()
        self._credentials = {"username": settings.username, "password": password}
        self._redact = Redactor([password])
        _mask_http_client_logs()

    async def send_sms(self, port: str, to: str, text: str, *, tid: int) -> TaskStatus:
        """Queues ``text`` from ``port`` to ``to`` (E.164); the accepted task's status."""
        task = {"tid": tid, "from": port, "to": wire_number(to), "sms": text, "chs": "utf8"}
        body = {"type": "send-sms", "task_num": 1, "tasks": [task]}

        async def attempt() -> TaskStatus:
            reply = await self._call("POST", SEND_PATH, json=body)
            status = _task_status(reply, tid)
            log.info("skyline_sms_queued", port=port, to=to, tid=tid, status=status.code)
            return status

        return await self._retry(attempt)

    async def port_status(self) -> list[PortState]:
        """Every port's state as the gateway reports it (``all_sims=1``)."""
        reply = await self._retry(lambda: self._call("GET", STATUS_PATH, params={"all_sims": 1}))
        return [_port_state(row) for row in reply.get("status") or [] if isinstance(row, dict)]

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        def retrying(attempt: int, err: BaseException, delay: float) -> None:
            log.warning("skyline_call_retrying", attempt=attempt, delay_s=delay, error=str(err))

        async def scrubbed() -> T:
            try:
                return await op()
            except SkylineError as err:
                raise self._scrubbed(err) from None

        return await retry(
            scrubbed,
            policy=self._policy,
            is_retryable=lambda err: isinstance(err, SkylineError) and err.retryable,
            on_retry=retrying,
        )

    def _scrubbed(self, err: SkylineError) -> SkylineError:
        """``err`` with the credentials masked: gateways echo the request in errors ("Server
        Error for username=…&password=…"), and these messages reach events, tables and pages."""
        message = self._redact(mask_query_password(str(err)))
        return type(err)(message, code=err.code, status_code=err.status_code)

    async def _call(self, method: str, path: str, **request: Any) -> dict[str, Any]:
        params = {**request.pop("params", {}), **self._credentials}
        started = time.monotonic()
        try:
            response = await self._http.request(method, path, params=params, **request)
        except httpx.TransportError as err:
            # the message names the failure only: httpx errors may carry the URL (and password)
            self._log_call(method, path, None, started, type(err).__name__)
            raise SkylineUnavailable(f"gateway unreachable: {type(err).__name__}") from None
        self._log_call(method, str(response.request.url), response.status_code, started, None)
        return _reply_of(response)

    def _log_call(
        self, method: str, url: str, status: int | None, started: float, error: str | None
    ) -> None:
        log.info(
            "skyline_called",
            method=method,
            url=self._redact(mask_query_password(url)),
            status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            error=error,
        )


def _reply_of(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if status in (408, 429) or status >= 500:
        raise SkylineUnavailable(f"gateway answered HTTP {status}", status_code=status)
    if status >= 400:
        raise SkylineRejected(f"gateway refused the request: HTTP {status}", status_code=status)
    try:
        reply = response.json()
    except ValueError:
        raise SkylineUnavailable("gateway answered without JSON", status_code=status) from None
    if not isinstance(reply, dict):
        raise SkylineUnavailable("gateway answered an unexpected JSON value", status_code=status)
    code = reply.get("code", 200)
    if code != 200:
        reason = str(reply.get("reason", ""))[:200]
        kind = SkylineUnavailable if isinstance(code, int) and code >= 500 else SkylineRejected
        raise kind(f"gateway answered code {code}: {reason}", status_code=status)
    return reply


def _task_status(reply: dict[str, Any], tid: int) -> TaskStatus:
    rows = [r for r in reply.get("status") or [] if isinstance(r, dict)]
    row = next((r for r in rows if str(r.get("tid")) == str(tid)), rows[0] if rows else None)
    if row is None:
        raise SkylineUnavailable("gateway answered without a task status")
    status = TaskStatus.parse(tid, row.get("status"))
    if status.accepted:
        return status
    message = f"task refused: {status.code} {status.text}"
    if status.code in RETRYABLE_CODES:
        raise SkylineUnavailable(message, code=status.code)
    raise SkylineRejected(message, code=status.code)


def _port_state(row: dict[str, Any]) -> PortState:
    st = re.match(r"\s*(\d+)", str(row.get("st", "")))  # some firmware writes "3 OK"
    return PortState(
        port=str(row.get("port", "")),
        status_code=int(st.group(1)) if st else -1,
        iccid=str(row.get("iccid") or "") or None,
        number=_number_or_none(str(row.get("sn") or "")),
    )


def _number_or_none(raw: str) -> str | None:
    try:
        return normalize_e164(raw) if raw else None
    except ValueError:  # gateways show whatever was configured as the SIM's number
        return None
