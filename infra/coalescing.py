"""Many concurrent callers' small statements sent as one (group commit).

On a busy machine a Postgres round trip costs far more than the statement: the client waits for
the server's process to be scheduled. Where many
handlers run at once and each would send the same small statement (the effects ledger, a
lookup), ``Coalesced`` hands them all to one ``run_many`` call: whatever arrives while a call is
in flight goes into the next one, so an idle system waits for nothing and a busy one sends one
statement for many items.

Each caller still gets its own result or its own error: should a call of several items fail
other than by an outage, every item is run again alone, so one bad item fails only its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from infra.outages import is_outage

T = TypeVar("T")
R = TypeVar("R")
RunMany = Callable[[Sequence[T]], Awaitable[Sequence[R]]]

MAX_ITEMS = 500


class Coalesced(Generic[T, R]):
    """``await coalesced(item)`` → ``run_many([... item ...])[its index]``."""

    def __init__(self, run_many: RunMany[T, R], *, max_items: int = MAX_ITEMS) -> None:
        self._run_many, self._max_items = run_many, max_items
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flushing is None:
            # started on the next turn of the loop: the callers of this turn join the first call
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                taken = self._waiting[: self._max_items]
                del self._waiting[: self._max_items]
                try:
                    await self._run(taken)
                except BaseException:  # cancelled: no caller may be left waiting
                    for _, future in taken + self._waiting:
                        future.cancel()
                    self._waiting.clear()
                    raise
        finally:
            self._flushing = None

    async def _run(self, taken: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run_many([item for item, _ in taken])
        except Exception as err:
            if len(taken) == 1 or is_outage(err):
                for _, future in taken:
                    if not future.done():  # else its caller was cancelled meanwhile
                        future.set_exception(err)
                return
            for one in taken:  # find the item that failed: the others get their results
                await self._run([one])
            return
        for (_, future), result in zip(taken, results, strict=True):
            if not future.done():
                future.set_result(result)
