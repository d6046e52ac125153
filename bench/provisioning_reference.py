"""The same-run reference of ``bench_provisioning``, measured by the reference commit's own code.

``bench_provisioning`` checks the reference commit out under ``.simfleet/bench`` and copies this
file, and only this file, into that tree (``bench/provisioning_reference.py``); run there, it
measures one scenario with that tree's own bench (the module named first on the command
line, ``bench.bench_provisioning``: its ``measure``) and prints the figures as one JSON line. It imports nothing but the standard library at the top and, inside
``main``, the reference tree's public entry points (``bench.bench_provisioning``: ``measure``,
``SCENARIOS``; ``infra.settings``), so modules moving in the tree under test never break it.

    python -m bench.provisioning_reference bench.bench_provisioning "<scenario name>" <serial>

Inputs by the environment (the database URL holds a password): ``BENCH_REFERENCE_DSN``,
``BENCH_REFERENCE_KAFKA`` (the bench's ``KafkaSettings`` as JSON; fields the reference does not
know are left out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path

DSN, KAFKA = "BENCH_REFERENCE_DSN", "BENCH_REFERENCE_KAFKA"
STATE_DIR = Path(".simfleet/bench")


def main(bench_module: str, name: str, serial: int) -> None:
    from pydantic import SecretStr

    from infra.settings import KafkaSettings, PostgresSettings, Settings

    # the bench named by the caller, as the tree this runs in (the reference commit's) has it
    reference = importlib.import_module(bench_module)

    offered = json.loads(os.environ[KAFKA])
    kafka = KafkaSettings.model_validate(
        {k: v for k, v in offered.items() if k in KafkaSettings.model_fields}
    )
    base = Settings(
        env="test",
        state_dir=STATE_DIR,
        kafka=kafka,
        postgres=PostgresSettings(database_url=SecretStr(os.environ[DSN])),
    )
    scenario = next(s for s in reference.SCENARIOS if s.name == name)
    measured = asyncio.run(reference.measure(base, scenario, serial))
    sys.stdout.write(json.dumps(dataclasses.asdict(measured)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
