"""Create the platform's topics (at their final size: Tansu cannot add partitions later).

The caller says how the admin client connects and how many replicas a topic gets: an entry
point passes its settings' values; the defaults (PLAINTEXT, one replica) fit a local broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from llmops.kafka.security import PLAINTEXT, KafkaSecurity
from schemas.topics import CORE_TOPICS, TopicSpec, inference_topic

log = logging.getLogger(__name__)


def platform_topics(pool_names: Iterable[str]) -> list[TopicSpec]:
    return [*CORE_TOPICS, *(inference_topic(name) for name in pool_names)]


def _admin(bootstrap_servers: str, security: KafkaSecurity) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="llmops-admin",
        **security.client_kwargs(),
    )


def _configs(spec: TopicSpec) -> dict[str, str]:
    configs = dict(spec.configs)
    if spec.compacted:
        configs.setdefault("cleanup.policy", "compact")
    return configs


def ensure_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create missing topics; returns the names created. Existing ones are left as they are."""
    admin = _admin(bootstrap_servers, security)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            topic = NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                topic_configs=_configs(spec),
            )
            try:
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # created meanwhile by another process
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        admin.close()


def list_topics(bootstrap_servers: str, *, security: KafkaSecurity = PLAINTEXT) -> dict[str, int]:
    """Topic name -> partition count."""
    admin = _admin(bootstrap_servers, security)
    try:
        described = admin.describe_topics()
        return {t["name"]: len(t["partitions"]) for t in described}
    finally:
        admin.close()


def delete_topics(
    bootstrap_servers: str, names: Iterable[str], *, security: KafkaSecurity = PLAINTEXT
) -> None:
    admin = _admin(bootstrap_servers, security)
    try:
        admin.delete_topics(list(names))
    finally:
        admin.close()
