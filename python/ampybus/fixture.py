"""Golden envelopes (seed §16) read and checked as the Go runtime's
``runtime/fixture`` does: one message per JSON file, its topic, headers and
payload as it travels. ``validate`` reports every problem by field, with
the same fields as Go's ``fixture.Validate``, so a fixture Go accepts is
accepted here and one it refuses is refused here, for the same reasons.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from google.protobuf import json_format

from ampybus import envelope, gzipgo, payload, route, wire

_KEYS = {"note", "notes", "topic", "headers", "payload", "payload_base64", "blob", "payload_b64", "payload_hex", "payload_json"}


@dataclass
class Fixture:
    """One golden envelope as written."""

    path: str
    topic: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    #: The payload exactly as stored (gzipped when content_encoding says so).
    stored: bytes = b""
    stored_set: bool = False
    #: The payload as protojson text, or None.
    json: Optional[str] = None
    blob: str = ""
    upstream: bool = False
    note: str = ""


@dataclass(frozen=True)
class Problem:
    """One way a fixture breaks the contract, at a field (topic,
    headers.partition_key, payload …)."""

    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


def parse(path: str, data: bytes) -> Fixture:
    """Reads a fixture in ampy-bus's format or the upstream one; ValueError
    for a file that is not one."""
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a JSON object")
    obj: dict[str, Any] = {}
    for k, v in raw.items():
        # Go's encoding/json matches keys to fields without regard to case.
        if k.lower() not in _KEYS:
            raise ValueError(f"{path}: unknown key {json.dumps(k)}")
        obj[k.lower()] = v
    headers = obj.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError(f"{path}: headers: every value is a string")
    f = Fixture(path=path, topic=obj.get("topic") or "", headers=dict(headers), blob=obj.get("blob") or "")
    f.note = obj.get("note") or obj.get("notes") or ""
    js = obj.get("payload")
    if any(k in obj for k in ("payload_json", "payload_b64", "payload_hex")):
        f.upstream = True
        if js is None:
            js = obj.get("payload_json")
    f.json = None if js is None else json.dumps(js)
    decoded = 0
    for name in ("payload_base64", "payload_b64", "payload_hex"):
        if name not in obj or obj[name] is None:
            continue
        try:
            text = obj[name]
            if name == "payload_hex":
                raw = binascii.unhexlify(text)
            else:  # Go's base64 decoder skips line breaks
                raw = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError, TypeError) as e:
            raise ValueError(f"{path}: {name}: {e}") from None
        decoded += 1
        if decoded > 1:
            raise ValueError(f"{path}: {name}: give the payload bytes once (payload_base64, payload_b64 or payload_hex)")
        f.stored, f.stored_set = raw, True
    return f


def load(path: str) -> Fixture:
    """Reads the fixture file at path."""
    with open(path, "rb") as fh:
        return parse(path, fh.read())


def validate(resolve: Callable[[str], tuple[Any, Any]], f: Fixture) -> list[Problem]:
    """Every problem of f against the contract whose ``resolve`` (the
    generated package's) finds routes, at the same fields as Go's
    fixture.Validate (the messages are worded apart): the topic fits a subtopic; the
    headers are well formed; schema fqdn, version and hash are the route's;
    the payload decodes, agrees with its protojson and gives the keys the
    headers carry; gzip and blob pointer fields are consistent. A dead
    letter is checked against its original topic."""
    probs: list[Problem] = []

    def add(fld: str, msg: str) -> None:
        probs.append(Problem(f.path, fld, msg))

    try:
        r, st = resolve(f.topic)
    except route.ContractError as e:
        add("topic", str(e))
        return probs
    h, errs = envelope.parse(sorted(f.headers.items()))
    for e in errs + h.validate():
        add("headers." + e.header, e.reason)
    topic = f.topic
    if isinstance(r, route.Raw):  # a dead letter: check it against its original topic
        if h.dlq_reason == "":
            add("headers.dlq_reason", "missing: a dead letter says why it was dead-lettered")
        orig = h.extra.get("dlq_original_topic", "")
        if orig == "":
            add("headers.dlq_original_topic", "missing: a dead letter names its original topic")
            return probs
        try:
            r2, st2 = resolve(orig)
        except route.ContractError as e:
            add("headers.dlq_original_topic", str(e))
            return probs
        if r2.domain != str(st):
            add("topic", f"dead letters of {r2.domain} go to {r.prefix_of(f.topic)}.{r2.domain}, not {f.topic}")
        if isinstance(r2, route.Raw):
            add("headers.dlq_original_topic", f"{orig} has no typed payload")
            return probs
        r, st, topic = r2, st2, orig
    for name, got, want in (
        (envelope.HEADER_SCHEMA_FQDN, h.schema_fqdn, r.schema_fqdn),
        (envelope.HEADER_SCHEMA_VERSION, h.schema_version, r.schema_version),
        (envelope.HEADER_SCHEMA_HASH, h.schema_hash, r.schema_hash),
        (envelope.HEADER_CONTENT_TYPE, h.content_type, envelope.CONTENT_TYPE_PROTOBUF),
    ):
        if got != "" and got != want:
            add("headers." + name, f"{got!r}, but {topic} carries {want!r}")
    if h.schema_hash == "":
        add("headers.schema_hash", f"missing: the contract's hash for {r.schema_fqdn} is {r.schema_hash}")

    raw = _wire_bytes(f, h, r, add)
    from_json = None
    if f.json is not None:
        from_json = r.payload()
        js = f.json
        if f.upstream:
            js = _strip_upstream_type(js, r.schema_fqdn, add)
        try:
            json_format.Parse(js, from_json)
        except json_format.ParseError as e:
            add("payload", f"does not decode as {r.schema_fqdn}: {e}")
            from_json = None
    if raw is not None:
        try:
            msg = payload.unmarshal(r.payload, raw)
        except ValueError as e:
            add("payload_base64", f"does not decode as {r.schema_fqdn}: {e}")
            return probs
        if from_json is not None and wire.marshal(msg) != wire.marshal(from_json):
            add("payload", "disagrees with payload_base64")
    elif from_json is not None:
        msg = from_json
    else:
        if not probs:
            add("payload", "missing: give payload_base64 (the exact bytes) or payload (protojson)")
        return probs
    try:
        keys = r.keys(st, msg)
    except route.ContractError as e:
        add("payload", str(e))
        return probs
    if keys.partition != h.partition_key:
        add("headers.partition_key", f"{h.partition_key!r}, but the contract derives {keys.partition!r} from the payload")
    if keys.dedupe != h.dedupe_key:
        add("headers.dedupe_key", f"{h.dedupe_key!r}, but the contract derives {keys.dedupe!r} from the payload")
    return probs


def _wire_bytes(f: Fixture, h: envelope.Headers, r: route.Route, add: Callable[[str, str], None]) -> Optional[bytes]:
    stored = f.stored
    if h.blob_ref:
        if stored:
            add("payload_base64", f"a blob pointer message carries no payload bytes, but this has {len(stored)}")
        if f.blob == "":
            add("blob", f"missing: name the file holding the blob ({h.blob_ref})")
            return None
        here = os.path.dirname(f.path)
        local = os.path.normpath(os.path.join(os.path.basename(here), f.blob))
        if os.path.isabs(f.blob) or local.startswith("..") or local == "..":
            add("blob", f"{f.blob!r} is outside the fixture set")
            return None
        try:
            with open(os.path.join(here, f.blob), "rb") as fh:
                data = fh.read()
        except OSError as e:
            add("blob", str(e))
            return None
        got = payload.blob_hash(data)
        if got != h.blob_hash:
            add("headers.blob_hash", f"{h.blob_hash!r}, but {f.blob} hashes to {got!r}")
        if len(data) != h.blob_size:
            add("headers.blob_size", f"{h.blob_size}, but {f.blob} is {len(data)} bytes")
        if r.max_payload > 0 and len(data) <= r.max_payload:
            add("blob", f"{len(data)} bytes fit the {r.domain} domain's max_payload of {r.max_payload}: send it inline")
        stored = data
    else:
        if f.blob:
            add("blob", "set, but the headers carry no blob_ref")
        if not f.stored_set:
            return None
        if r.max_payload > 0 and len(stored) > r.max_payload:
            add("payload_base64", f"{len(stored)} bytes, over the {r.domain} domain's max_payload of {r.max_payload}: use the blob pointer pattern")
    if h.content_encoding == envelope.ENCODING_GZIP:
        try:
            raw = payload.inflate(stored, r.max_inflated)
        except payload.PoisonError as e:
            if str(e).startswith("decompression_limit"):
                add("payload_base64", f"gzip data inflating past the {r.domain} domain's max_inflated of {r.max_inflated} bytes")
            else:
                add("headers.content_encoding", f"gzip, but the payload is not gzip data: {e}")
            return None
        if gzipgo.compress(raw) != stored:
            add("payload_base64", "gzip data, but not as the runtime writes it (no name, no mtime, default level)")
        return raw
    if r.compress_above > 0 and len(stored) > r.compress_above:
        add("headers.content_encoding", f"missing: the payload is {len(stored)} bytes, over the {r.domain} domain's compress_above of {r.compress_above}, so it is gzipped")
    return stored


def _strip_upstream_type(js: str, fqdn: str, add: Callable[[str, str], None]) -> str:
    try:
        obj = json.loads(js)
    except ValueError:
        return js
    if not isinstance(obj, dict) or "_message" not in obj:
        return js
    name = obj.pop("_message")
    if isinstance(name, str) and name != fqdn:
        add("payload_json._message", f"{name!r}, but the topic carries {fqdn}")
    return json.dumps(obj)
