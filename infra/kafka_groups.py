"""Consumer groups this deployment stopped using, deleted from the broker.

A group nobody consumes with keeps its committed offsets until the broker expires them
(``offsets.retention.minutes``: 7 days by default), and the lag meter (``infra.kafka_lag``)
would show it falling further behind all that while — and raise the lag alert. Deleting it
when its successor starts ends that.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DeleteGroupsRequest

from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

log = structlog.get_logger("simfleet.kafka")

NO_ERROR = 0


async def delete_retired_groups(
    bootstrap: str, kafka: KafkaSettings, groups: Sequence[str]
) -> list[str]:
    """Deletes those of ``groups`` the broker knows; returns the deleted. One still in use (a
    process of the previous version during a rolling upgrade) is refused by the broker and
    left; a broker that cannot answer is logged, never raised: the caller starts regardless."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=servers(bootstrap), client_id="simfleet-groups", **client_options(kafka)
    )
    deleted: list[str] = []
    try:
        await admin.start()
        known = {g[0] for g in await admin.list_consumer_groups()}
        for group in (g for g in groups if g in known):
            coordinator = await admin.find_coordinator(group)
            # aiokafka's admin client has no call for it; the request is Kafka's own (API 42)
            answer = await admin._send_request(DeleteGroupsRequest([group]), coordinator)
            refused = {name: code for name, code in answer.results if code != NO_ERROR}
            if group in refused:
                log.info("consumer_group_kept", group=group, error_code=refused[group])
            else:
                deleted.append(group)
    except (KafkaError, OSError) as err:
        log.warning("consumer_groups_not_deleted", groups=list(groups), error=repr(err))
    finally:
        await admin.close()
    if deleted:
        log.info("consumer_groups_deleted", groups=deleted)
    return deleted
