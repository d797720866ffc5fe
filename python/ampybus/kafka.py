"""Publishing and consuming on Kafka with confluent-kafka, as the Go binding
does: the Kafka topic is the domain's prefix (ampy.prod.bars.v1), the record
key is the partition_key, the partition is the one Go's franz-go and the
Java client choose (murmur2, not librdkafka's default), the subtopic travels
in the ``subtopic`` header and the envelope in the others.

confluent-kafka is imported by the caller; this module only shapes records,
so it works with any Producer or Consumer object of that library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ampybus import envelope, payload
from ampybus.partition import partition_for
from ampybus.payload import PoisonError
from ampybus.route import ContractError, Route, fits

#: The record header naming the subtopic (XNAS.AAPL): the Kafka topic stops
#: at the domain version.
HEADER_SUBTOPIC = "subtopic"


@dataclass
class Record:
    """One record as a producer sends it."""

    topic: str
    partition: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    envelope: envelope.Headers


def record(
    route: Route,
    env: str,
    subtopic: Any,
    msg: Any,
    *,
    producer: str,
    source: str,
    run_id: str = "",
    trace: Optional[envelope.TraceContext] = None,
    message_id: str = "",
    extra: Optional[dict[str, str]] = None,
) -> Record:
    """The record the Go publisher would write for msg on subtopic in env:
    keys derived from the payload, payload encoded (gzip above
    compress_above), envelope filled and checked. A trace continues as a
    child span; without one a new trace starts."""
    keys = route.keys(subtopic, msg)
    stored, encoding = payload.encode(route, msg)
    h = envelope.Headers(
        message_id=message_id or envelope.new_message_id(),
        schema_fqdn=route.schema_fqdn,
        schema_version=route.schema_version,
        content_type=envelope.CONTENT_TYPE_PROTOBUF,
        content_encoding=encoding,
        produced_at=envelope.now_ns(),
        producer=producer,
        source=source,
        run_id=run_id or envelope.new_message_id(),
        trace=trace.child() if trace is not None and trace.valid() else envelope.TraceContext.new(),
        partition_key=keys.partition,
        dedupe_key=keys.dedupe,
        schema_hash=route.schema_hash,
        extra=dict(extra or {}),
    )
    for k in h.extra:
        if k in envelope.ENVELOPE_HEADERS or k == HEADER_SUBTOPIC:
            raise ContractError(f"extra header {k} is one the bus writes itself")
    problems: list[envelope.HeaderError] = h.validate()
    size = h.check_size()
    if size is not None:
        problems.append(size)
    if problems:
        raise ContractError("; ".join(str(p) for p in problems))
    headers = [(HEADER_SUBTOPIC, str(subtopic).encode())] + [(k, v.encode()) for k, v in h.fields()]
    return Record(
        topic=route.prefix(env),
        partition=partition_for(keys.partition, route.partitions),
        key=keys.partition.encode(),
        value=stored,
        headers=headers,
        envelope=h,
    )


def produce(kafka_producer: Any, rec: Record, on_delivery: Optional[Callable[..., None]] = None) -> None:
    """Hands rec to a confluent_kafka.Producer, on the partition Go uses."""
    kwargs: dict[str, Any] = {}
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    kafka_producer.produce(
        topic=rec.topic, value=rec.value, key=rec.key, partition=rec.partition, headers=rec.headers, **kwargs
    )


@dataclass
class Message:
    """A record that passed every check a Go consumer makes."""

    topic: str
    subtopic: Any
    payload: Any
    headers: envelope.Headers


def parse_headers(
    key: Optional[bytes], headers: Optional[Sequence[tuple[str, Optional[bytes]]]]
) -> tuple[envelope.Headers, Optional[str], list[envelope.HeaderError]]:
    """A record's envelope and subtopic, with every problem the Go binding
    reports, in its order: repeated headers (the first value counts), a
    missing subtopic, a record key other than the partition_key, then the
    envelope's own."""
    sub: Optional[str] = None
    counts: dict[str, int] = {}
    items: list[tuple[str, str]] = []
    for k, v in headers or ():
        if k in counts:
            counts[k] += 1
            continue
        counts[k] = 1
        text = (v or b"").decode("utf-8", "surrogateescape")
        if k == HEADER_SUBTOPIC:
            sub = text
        else:
            items.append((k, text))
    errs = sorted((envelope.repeated(k, n) for k, n in counts.items() if n > 1), key=str)
    if sub is None:
        errs.append(envelope.HeaderError(HEADER_SUBTOPIC, "", "missing: a Kafka record names its subtopic (XNAS.AAPL) in this header"))
    h, perrs = envelope.parse(items)
    key_text = (key or b"").decode("utf-8", "surrogateescape")
    if h.partition_key != "" and key_text != h.partition_key:
        errs.append(
            envelope.HeaderError(
                "record key",
                key_text,
                f"differs from partition_key {envelope.go_quote(h.partition_key)}; produce with the partition_key as the record key",
            )
        )
    return h, sub, errs + perrs


def read(route: Route, topic: str, key: Optional[bytes], value: Optional[bytes], headers: Optional[Sequence[tuple[str, Optional[bytes]]]],
         fetch_blob: Optional[Callable[[str], bytes]] = None) -> Optional[Message]:
    """Checks one record as the Go consumer does and decodes it; PoisonError
    carries the dlq_reason a Go consumer would write. None for a record of
    another subtopic sharing the topic (ticks' trade and quote), which a Go
    consumer of route passes over rather than dead-letters."""
    h, sub, errs = parse_headers(key, headers)
    if sub is not None and not fits(route.pattern, sub):
        return None
    if errs:
        raise PoisonError("contract_violation: " + "\n".join(str(e) for e in errs))
    problems = h.validate()
    if problems:
        raise PoisonError("contract_violation: " + "\n".join(str(e) for e in problems))
    if h.schema_fqdn != route.schema_fqdn:
        raise PoisonError(f"schema_mismatch: schema_fqdn {h.schema_fqdn}, but {route.pattern} carries {route.schema_fqdn}")
    reason = check_schema(h, route)
    if reason:
        raise PoisonError(reason)
    full = topic + "." + (sub or "")
    try:
        st = route.subtopic_of(full)
    except ContractError as e:
        raise PoisonError(f"contract_violation: {e}") from None
    msg = payload.decode(route, h, value or b"", fetch_blob)
    try:
        keys = route.keys(st, msg)
    except ContractError as e:
        raise PoisonError(f"contract_violation: {e}") from None
    if keys.partition != h.partition_key:
        raise PoisonError(
            f"contract_violation: partition_key {envelope.go_quote(h.partition_key)}, "
            f"but the contract derives {envelope.go_quote(keys.partition)} from the payload"
        )
    if h.dedupe_key != keys.dedupe:
        if h.dedupe_key == "":
            why = f"dedupe_key is missing, but the contract derives {envelope.go_quote(keys.dedupe)} from the payload"
        elif keys.dedupe == "":
            why = f"dedupe_key {envelope.go_quote(h.dedupe_key)}, but the contract derives none for {route.pattern}"
        else:
            why = f"dedupe_key {envelope.go_quote(h.dedupe_key)}, but the contract derives {envelope.go_quote(keys.dedupe)} from the payload"
        raise PoisonError("contract_violation: " + why)
    return Message(topic=full, subtopic=st, payload=msg, headers=h)


def _semver_major(v: str) -> Optional[str]:
    parts = v.split(".")
    if len(parts) != 3:
        return None
    for p in parts:
        if p == "" or len(p) > 9 or not p.isascii() or not p.isdigit() or (len(p) > 1 and p[0] == "0"):
            return None
    return parts[0]


def check_schema(h: envelope.Headers, route: Route) -> str:
    """The dlq_reason when the headers describe a payload other than the
    route's, "" when compatible (a newer minor or patch of the same major)."""
    if h.content_type != envelope.CONTENT_TYPE_PROTOBUF:
        return f"schema_mismatch: content_type {h.content_type}, but the contract carries {route.schema_fqdn} as {envelope.CONTENT_TYPE_PROTOBUF}"
    if h.schema_version == route.schema_version and (h.schema_hash == "" or route.schema_hash == "" or h.schema_hash == route.schema_hash):
        return ""
    got = _semver_major(h.schema_version)
    if got is None:
        return f"contract_violation: schema_version {envelope.go_quote(h.schema_version)} is not MAJOR.MINOR.PATCH"
    major = _semver_major(route.schema_version)
    if got != major:
        return (f"schema_mismatch: schema_version {h.schema_version} is major {got}, but this topic carries "
                f"{route.schema_fqdn} major {major} (a new major travels on a new topic version)")
    if h.schema_hash and route.schema_hash and h.schema_hash != route.schema_hash and h.schema_version == route.schema_version:
        return (f"schema_hash_mismatch: produced against {h.schema_hash}, this consumer has {route.schema_hash} for "
                f"{route.schema_fqdn} {route.schema_version}: the schema changed without a version bump")
    return ""
