"""Who is named as the actor of an operator command, per channel, and how the audit reads it."""

from __future__ import annotations

import pytest

from infra.actors import (
    MAX_NAME,
    actor,
    channel_of,
    cli_actor,
    dashboard_actor,
    is_operator,
    run_actor,
)


def test_the_dashboard_user_is_named_per_channel() -> None:
    assert dashboard_actor("alice", "/sims/actions") == "dashboard:alice"
    assert dashboard_actor("alice", "/import") == "dashboard:alice"
    assert dashboard_actor("alice", "/api/sims/cancel") == "api:alice"
    assert dashboard_actor("alice", "/api/resellers/acme/endpoints/x") == "api:alice"


def test_a_run_call_is_named_by_its_secrets_variable() -> None:
    assert run_actor("BULK_RUN_SECRET") == "run:BULK_RUN_SECRET"


def test_the_cli_names_the_os_user_and_the_user_behind_sudo() -> None:
    assert cli_actor({"USER": "bob", "LOGNAME": "bob"}) == "cli:bob"
    assert cli_actor({"USER": "root", "SUDO_USER": "carol"}) == "cli:carol"
    assert cli_actor({"USERNAME": "dave"}) == "cli:dave"


def test_the_cli_falls_back_to_the_password_database() -> None:
    found = cli_actor({})
    assert found.startswith("cli:")
    assert len(found) > len("cli:")


def test_names_are_made_printable_and_short() -> None:
    assert actor("dashboard", "eve\r\nforged: line") == "dashboard:eve forged: line"
    assert actor("cli", "  ") == "cli:unknown"
    assert actor("cli", "x" * 500) == "cli:" + "x" * MAX_NAME
    with pytest.raises(ValueError, match="unknown channel"):
        actor("mail", "x")


@pytest.mark.parametrize(
    ("requested_by", "channel", "operator"),
    [
        ("dashboard:alice", "dashboard", True),
        ("api:alice", "api", True),
        ("run:CANCEL_SECRET", "run", True),
        ("cli:bob", "cli", True),
        ("cli", "cli", True),  # what the reseller CLI recorded before actors had names
        ("bulk_import", "other", True),  # the old import default: an operator, unnamed
        ("system", "system", False),
    ],
)
def test_channel_and_operator_of_a_requested_by(
    requested_by: str, channel: str, operator: bool
) -> None:
    assert channel_of(requested_by) == channel
    assert is_operator(requested_by) is operator
