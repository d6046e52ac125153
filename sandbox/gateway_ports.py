"""Which SIM sits in which port of which sandbox gateway, and what the carrier says about it.

The ports hold ICCIDs; numbers come from the Helix sandbox's ``HelixWorld`` at the moment they
are asked for, so a rotated number is found on the same port at once. ``dev_status`` is the
gateway's own report of its ports (EXTERNAL_APIS §1.3).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

from events.types import normalize_e164
from sandbox.helix_world import HelixWorld
from sandbox.skyline import DEFAULT_GATEWAY_ID

REGISTERED, NO_SIM, REGISTRATION_FAILED = 3, 0, 6
PORT_NAME = re.compile(r"^(\d+)(?:\.(\d{2})|([A-D]))$")  # "12.01" or "12A"


class PortRegistry:
    def __init__(
        self,
        carrier: HelixWorld,
        gateways: Iterable[str] = (DEFAULT_GATEWAY_ID,),
        *,
        max_ports: int = 256,
        auto_insert: bool = False,
    ) -> None:
        self.carrier = carrier
        self.sims: dict[str, dict[str, str]] = {g: {} for g in gateways}  # gateway → port → ICCID
        self.max_ports, self.auto_insert = max_ports, auto_insert
        self._seq = itertools.count(1)

    @property
    def default_gateway(self) -> str:
        return next(iter(self.sims))

    def insert_sim(
        self, iccid: str, *, gateway_id: str | None = None, port: str | None = None
    ) -> tuple[str, str]:
        """Puts the SIM in a port (the first free ``N.01`` unless named; of the gateway with the
        fewest SIMs unless named: a fleet spreads over its gateways); returns where."""
        gateway_id = gateway_id or min(self.sims, key=lambda g: len(self.sims[g]))
        taken = self.sims[gateway_id]
        port = port or next(
            f"{n}.01" for n in range(1, self.max_ports + 1) if f"{n}.01" not in taken
        )
        self.remove_sim(iccid)
        taken[port] = iccid
        return gateway_id, port

    def remove_sim(self, iccid: str) -> None:
        for taken in self.sims.values():
            for port in [p for p, i in taken.items() if i == iccid]:
                del taken[port]

    def valid_port(self, port: str) -> bool:
        named = PORT_NAME.match(port)
        return named is not None and int(named.group(1)) <= self.max_ports

    def sim_at(self, gateway_id: str, port: str) -> str | None:
        self.seat_carrier_sims()
        return self.sims[gateway_id].get(port)

    def port_of(self, iccid: str) -> tuple[str, str] | None:
        self.seat_carrier_sims()
        seats = ((g, p) for g, taken in self.sims.items() for p, i in taken.items() if i == iccid)
        return next(seats, None)

    def number_of(self, iccid: str) -> str | None:
        sub = self.carrier.subscriber_by_iccid(iccid)
        return normalize_e164(sub.phone_number) if sub and sub.phone_number else None

    def sim_with_number(self, number: str) -> str | None:
        """The SIM that has ``number`` now (the carrier may have given it to a line since)."""
        ten = normalize_e164(number)[-10:]
        found = [s for s in self.carrier.subscribers.values() if s.phone_number == ten]
        active = [s for s in found if s.status == "ACTIVE"]
        return (active or found)[-1].iccid if found else None

    def port_state(self, iccid: str | None) -> int:
        if iccid is None:
            return NO_SIM
        sub = self.carrier.subscriber_by_iccid(iccid)
        return REGISTERED if sub is not None and sub.status == "ACTIVE" else REGISTRATION_FAILED

    def seat_carrier_sims(self) -> None:
        """With ``auto_insert`` (the demo), every active line sits in some port."""
        if not self.auto_insert:
            return
        seated = {i for taken in self.sims.values() for i in taken.values()}
        for sub in list(self.carrier.subscribers.values()):
            if sub.status == "ACTIVE" and sub.iccid not in seated:
                self.insert_sim(sub.iccid)

    def port_rows(self, gateway_id: str) -> list[dict[str, Any]]:
        """Each seated port as a status row (EXTERNAL_APIS §1.3)."""
        self.seat_carrier_sims()
        return [
            {
                "port": port,
                "st": self.port_state(iccid),
                "iccid": iccid,
                "imsi": "",
                "sn": (self.number_of(iccid) or "").removeprefix("+1"),
            }
            for port, iccid in sorted(self.sims[gateway_id].items())
        ]

    def dev_status(self, gateway_id: str) -> dict[str, Any]:
        rows = self.port_rows(gateway_id)
        return {
            "type": "dev-status",
            "seq": next(self._seq),
            "mac": gateway_id,
            "max-ports": self.max_ports,
            "max-slots": 4,
            "status": rows,
        }
