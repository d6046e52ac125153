"""The benchmarks' reseller endpoint, run as its own process: a bare aiohttp app answering
``200 ok`` that verifies every 100th request's signature with the public ``standardwebhooks``
library and counts (``GET /stats``, ``POST /reset``), so a fast but wrongly signed run fails.

A module of its own, importing only aiohttp: on a busy machine it is up in a fraction of the
time a child importing the whole simfleet stack would take.

    .venv/bin/python -m bench.webhook_receiver PORT   (secret in BENCH_WEBHOOK_SECRET)
"""

from __future__ import annotations

import contextlib
import os
import sys

from aiohttp import web

SAMPLE_EVERY = 100


def serve(port: int, secret: str) -> None:
    from standardwebhooks.webhooks import Webhook

    verifier = Webhook(secret)
    stats = {"received": 0, "sampled": 0, "valid": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        stats["received"] += 1
        if stats["received"] % SAMPLE_EVERY == 0:
            stats["sampled"] += 1
            with contextlib.suppress(Exception):
                verifier.verify(body, dict(request.headers), json_parse=False)
                stats["valid"] += 1
        return web.Response(status=200, text="ok")

    async def report(_request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(_request: web.Request) -> web.Response:
        stats.update(received=0, sampled=0, valid=0)
        return web.Response(status=204)

    app = web.Application()
    app.add_routes(
        [web.post("/hooks/{endpoint}", hook), web.get("/stats", report), web.post("/reset", reset)]
    )
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    serve(int(sys.argv[1]), os.environ["BENCH_WEBHOOK_SECRET"])
