"""What the command line says about a user's mistake: one line, what is wrong and what to do,
exit status 2 — never a traceback. Failures of the program itself keep their traceback."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsError

from infra.settings import Settings

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake the user can fix; the message says how."""


def _fields(model: type[BaseModel], found: dict[str, tuple[str, object]]) -> None:
    prefix = str(model.model_config.get("env_prefix", ""))
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            _fields(annotation, found)
            continue
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        default = field.default
        if field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        found[f"{model.__name__}.{name}"] = ((alias or f"{prefix}{name}").upper(), default)


def _variables() -> dict[str, tuple[str, object]]:
    """``Model.field`` → (environment variable, default)."""
    found: dict[str, tuple[str, object]] = {}
    _fields(Settings, found)
    return found


def settings_problem(err: ValidationError | SettingsError) -> str:
    """The variables that could not be read and why, without their values (one may be a secret)."""
    variables = _variables()
    if isinstance(err, SettingsError):
        field = re.search(r'field "([^"]+)"', str(err))
        matches = [
            (env, default)
            for key, (env, default) in variables.items()
            if field and key.endswith(f".{field.group(1)}")
        ]
        if not matches:
            return f"a setting cannot be read: {err}"
        env, default = matches[0]
        if isinstance(default, tuple | list | dict) and default:
            example = json.dumps(list(default) if isinstance(default, tuple) else default)
            return f"{env} cannot be read: it takes JSON, e.g. {env}='{example}'"
        return f"{env} cannot be read: it takes JSON (see its line in .env.example)"
    problems = []
    for error in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in error["loc"])
        env = variables.get(f"{err.title}.{loc}", (loc.upper(), None))[0]
        problems.append(f"{env}: {error['msg']}" if loc else error["msg"])
    return "; ".join(problems)


def load_problem(err: ValidationError | SettingsError) -> UserError:
    return UserError(
        f"invalid configuration: {settings_problem(err)} (see `simfleet config reference`)"
    )
