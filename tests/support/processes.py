"""simfleet commands run as separate OS processes, as an operator starts them; for fault tests
that SIGKILL and restart them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

SIMFLEET = str(Path(sys.executable).parent / "simfleet")
START_TIMEOUT_S = 90.0


class SimfleetProcess:
    """One ``simfleet <args>`` at a time; its log (stderr) appended to ``log_path``."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.start_timeout_s = start_timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    @property
    def name(self) -> str:
        return " ".join(self.args)

    @property
    def alive(self) -> bool:
        """Started and not ended (a process the test did not kill must stay up through faults)."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Returns once the process announced it is running (consumers started)."""
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                SIMFLEET, *self.args, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        self.starts += 1
        assert self.proc.stdout is not None
        async with asyncio.timeout(self.start_timeout_s):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, f"{self.name} ended before it was running (see {self.log_path})"
                if "is running" in line:
                    return

    async def sigkill(self) -> None:
        """No goodbye: no offset commit, no transaction finished, no lease released."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
