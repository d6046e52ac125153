"""The one event envelope (CloudEvents 1.0, structured JSON) and deterministic ids.

Every event type is a frozen subclass with a ``Literal`` type, a typed ``data`` payload, the
payload fields that identify the fact (``identity``) and the field that is its partition key
(``subject_field``). ``create``/``of`` are the only places ids are made: ``"<type>_" +
sha256(canonical JSON of the identity fields)``, so the same fact always gets the same id.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal, Self, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict

EVENT_TYPES: dict[str, builtins.type[Event]] = {}
REQUESTED_BY = (
    "actor: dashboard:<user>, api:<user>, run:<SECRET_VARIABLE>, cli:<os user>, or system"
)
NUL, REPLACEMENT = "\x00", "\ufffd"


class Payload(BaseModel):
    # every field is on the wire, defaults included: the exported schemas (serialization mode)
    # require them all, so a subscriber may rely on each one being there
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


def canonical_id(event_type: str, identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{event_type}_{hashlib.sha256(canonical.encode()).hexdigest()}"


def storable(value: Any) -> Any:
    """``value`` with U+0000 replaced by U+FFFD in every string, however deep. Postgres text
    and jsonb cannot hold U+0000: an SMS carrying one would be acknowledged, then refused by
    every projection (dead-lettered, missing from ``inbound_sms`` and the archive)."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(storable(v) for v in value)
    if isinstance(value, BaseModel):
        dumped = value.model_dump()
        cleaned = storable(dumped)
        return value if cleaned == dumped else cleaned
    return value


def new_ref() -> str:
    """A fresh identity for facts without a natural one (an operator's click, a call)."""
    return uuid.uuid4().hex


class Event(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    specversion: Literal["1.0"] = "1.0"
    id: str
    type: str
    source: str
    subject: str
    time: AwareDatetime
    correlationid: str
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: int = 1
    data: Payload

    identity: ClassVar[tuple[str, ...]] = ()
    subject_field: ClassVar[str] = "iccid"
    version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        event_type = cls.model_fields["type"].default
        if isinstance(event_type, str):
            EVENT_TYPES[event_type] = cls

    @classmethod
    def event_type(cls) -> str:
        return cast(str, cls.model_fields["type"].default)

    @classmethod
    def payload_model(cls) -> builtins.type[Payload]:
        return cast(builtins.type[Payload], cls.model_fields["data"].annotation)

    @classmethod
    def subject_of(cls, data: Payload) -> str:
        return str(getattr(data, cls.subject_field))

    @classmethod
    def id_for(cls, data: Payload) -> str:
        dumped = data.model_dump(mode="json")
        keys = cls.identity or tuple(dumped)
        return canonical_id(cls.event_type(), {k: dumped[k] for k in keys})

    @classmethod
    def create(
        cls, *, producer: str, time: datetime, correlationid: str | None = None, **fields: Any
    ) -> Self:
        """``producer`` becomes the CloudEvents ``source`` (e.g. ``simfleet/activation``); a NUL
        character in any field becomes U+FFFD (see ``storable``)."""
        data = cls.payload_model().model_validate(storable(fields))
        event_id = cls.id_for(data)
        return cls(
            type=cls.event_type(),
            id=event_id,
            source=producer,
            subject=cls.subject_of(data),
            time=time,
            correlationid=correlationid or event_id,
            data=data,
        )

    @classmethod
    def of(cls, cause: Event, *, producer: str, time: datetime, **fields: Any) -> Self:
        """An event caused by ``cause``: the correlation id is carried forward."""
        return cls.create(producer=producer, time=time, correlationid=cause.correlationid, **fields)
