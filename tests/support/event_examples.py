"""One instance of any event type, built from its model alone: for tests that must feed every
type a topic carries (derived from ``events.topics``) without a hand-written sample per type.

Values are placeholders of the annotated type, not valid business data (``model_construct``
skips validation): enough to walk a dispatch, never to publish.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from events.envelope import Event

AT = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def example(cls: type[Event], n: int = 1) -> Event:
    """An instance of ``cls``; ``n`` tells apart several of one type (its id)."""
    data = _model(cls.model_fields["data"].annotation)
    return cls.model_construct(
        id=f"{cls.event_type()}-{n}",
        type=cls.event_type(),
        source="simfleet/test",
        subject="subject",
        time=AT,
        correlationid=f"correlation-{n}",
        data=data,
    )


def _model(model: Any) -> Any:
    fields = {name: _value(f.annotation) for name, f in model.model_fields.items()}
    return model.model_construct(**fields)


def _value(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _value(args[0])
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return args[0]
    if origin in (list, tuple, set, frozenset) or _is_sequence(origin):
        item = _value(args[0]) if args else "x"
        return (origin if origin in (list, tuple, set, frozenset) else list)([item])
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return {}
    if isinstance(annotation, type):
        return _of_type(annotation)
    return "x"


def _is_sequence(origin: Any) -> bool:
    return origin is not None and getattr(origin, "__name__", "") in {"Sequence", "Iterable"}


def _of_type(cls: type) -> Any:
    if issubclass(cls, BaseModel):
        return _model(cls)
    if issubclass(cls, enum.Enum):
        return next(iter(cls))
    if issubclass(cls, bool):
        return False
    if issubclass(cls, int | float):
        return cls(1)
    if issubclass(cls, datetime):
        return AT
    if issubclass(cls, date):
        return AT.date()
    if issubclass(cls, timedelta):
        return timedelta(seconds=1)
    if issubclass(cls, SecretStr):
        return SecretStr("x")
    return "x"
