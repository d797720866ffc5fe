"""Subjects and headers for any NATS client (nats-py, say), as the Go
binding writes them; this module opens no connection.

A JetStream subject carries the partition of its key as a first token:
ampy.prod.orders.v1.requests with key co_123 in partition 4 of 6 is stored
as 4.ampy.prod.orders.v1.requests, so each partition of a consumer group
has its own consumer. The partition is the one Kafka uses for the same key
(``partition.partition_for``). The stream refuses a subject without it.
"""

from __future__ import annotations

from typing import Any, Mapping

from ampybus import envelope
from ampybus.partition import partition_for
from ampybus.route import Route

#: JetStream's publish dedupe header; the bus sets it to the message_id.
HEADER_MSG_ID = "Nats-Msg-Id"


def subject(route: Route, env: str, subtopic: Any, partition_key: str) -> str:
    """The subject a message of subtopic with partition_key is published on."""
    return f"{partition_for(partition_key, route.partitions)}.{route.topic(env, subtopic)}"


def topic_of(subject_: str) -> str:
    """The contract's topic of a stored subject: the partition token dropped."""
    head, _, rest = subject_.partition(".")
    if envelope.go_int(head) is None or not rest:
        raise ValueError(f"subject {subject_!r} does not start with a partition token")
    return rest


def headers(h: envelope.Headers) -> dict[str, str]:
    """The NATS headers of envelope h: its fields, and Nats-Msg-Id so
    JetStream drops a republished id within the domain's dedupe window."""
    out = dict(h.fields())
    out[HEADER_MSG_ID] = h.message_id
    return out


def parse(hdrs: Mapping[str, Any]) -> tuple[envelope.Headers, list[envelope.HeaderError]]:
    """The envelope of received NATS headers (JetStream's own Nats-* headers
    left out); a header given several values is an error, as in Go."""
    items: list[tuple[str, str]] = []
    errs: list[envelope.HeaderError] = []
    for k, v in hdrs.items():
        if k.startswith("Nats-"):
            continue
        if isinstance(v, (list, tuple)):
            if len(v) > 1:
                errs.append(envelope.repeated(k, len(v)))
            v = v[0] if v else ""
        items.append((k, str(v)))
    h, perrs = envelope.parse(sorted(items))
    return h, errs + perrs
