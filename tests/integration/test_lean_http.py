"""The benchmarks' lean HTTP client against a real uvicorn server: answers come back whole and
in order per request over reused connections, and a server that went away is an error, not a
hang."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench import lean_http
from bench.lean_http import LeanHttp
from infra.http import serve_http

pytestmark = pytest.mark.integration


async def _echo(request: Request) -> Response:
    body = await request.body()
    if request.headers.get("x-token") != "t":
        return JSONResponse({"error": "no token"}, status_code=401)
    # a body larger than one read, so an answer arrives in pieces
    return JSONResponse({"n": int(body), "pad": "x" * 200_000, "seen": request.url.path})


APP = Starlette(routes=[Route("/sms", _echo, methods=["POST"])])


async def test_every_answer_comes_back_to_its_own_request_over_few_connections() -> None:
    async with serve_http(APP) as url, LeanHttp(url, {"x-token": "t"}, limit=4) as http:
        answers = await asyncio.gather(*(http.post("/sms", str(n).encode()) for n in range(50)))
        assert [status for status, _ in answers] == [200] * 50
        bodies = [orjson.loads(body) for _, body in answers]
        assert [b["n"] for b in bodies] == list(range(50))
        assert all(len(b["pad"]) == 200_000 and b["seen"] == "/sms" for b in bodies)
        assert http.opened <= 4


async def test_the_status_of_a_refusal_is_returned() -> None:
    async with serve_http(APP) as url, LeanHttp(url, {}) as http:
        status, body = await http.post("/sms", b"1")
    assert status == 401
    assert b"no token" in body


async def test_a_server_gone_is_an_error() -> None:
    async with serve_http(APP) as url:
        pass
    async with LeanHttp(url, {}) as http:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(http.post("/sms", b"1"), 10)


async def test_a_connection_idle_near_the_servers_keep_alive_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lean_http, "REUSE_WITHIN_S", 0.05)
    async with serve_http(APP) as url, LeanHttp(url, {"x-token": "t"}, limit=1) as http:
        await http.post("/sms", b"1")
        await asyncio.sleep(0.1)
        status, _ = await http.post("/sms", b"2")
        assert status == 200
        assert http.opened == 1
        assert len(http._all) == 2
