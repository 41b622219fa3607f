"""Create the platform's topics (at their final size: Tansu cannot add partitions later)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from llmops.kafka.security import process_security
from schemas.topics import CORE_TOPICS, TopicSpec, inference_topic

log = logging.getLogger(__name__)


def platform_topics(pool_names: Iterable[str]) -> list[TopicSpec]:
    return [*CORE_TOPICS, *(inference_topic(name) for name in pool_names)]


def _admin(bootstrap_servers: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="llmops-admin",
        **process_security().client_kwargs(),
    )


def _configs(spec: TopicSpec) -> dict[str, str]:
    configs = dict(spec.configs)
    if spec.compacted:
        configs.setdefault("cleanup.policy", "compact")
    return configs


def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], replication_factor: int | None = None
) -> list[str]:
    """Create missing topics; returns the names created. Existing ones are left as they are."""
    if replication_factor is None:
        from llmops.config import get_settings

        replication_factor = get_settings().topic_replication_factor
    admin = _admin(bootstrap_servers)
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


def list_topics(bootstrap_servers: str) -> dict[str, int]:
    """Topic name -> partition count."""
    admin = _admin(bootstrap_servers)
    try:
        described = admin.describe_topics()
        return {t["name"]: len(t["partitions"]) for t in described}
    finally:
        admin.close()


def delete_topics(bootstrap_servers: str, names: Iterable[str]) -> None:
    admin = _admin(bootstrap_servers)
    try:
        admin.delete_topics(list(names))
    finally:
        admin.close()
