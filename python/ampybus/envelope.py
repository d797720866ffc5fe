"""The headers every ampy-bus message carries, as the Go runtime writes them.

This module mirrors ``runtime/envelope`` of the Go module: the same wire
names (lower case, exactly as the seed spells them: NATS header keys are
case-sensitive), the same order on the wire, the same limits and the same
verdicts. A message a Go consumer accepts is accepted here and one it
refuses is refused here, with the header named.

It speaks to no broker: ``fields`` gives the wire headers as
``(name, value)`` pairs for any client (confluent-kafka, nats-py), and
``parse`` reads them back.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Optional

HEADER_MESSAGE_ID = "message_id"
HEADER_SCHEMA_FQDN = "schema_fqdn"
HEADER_SCHEMA_VERSION = "schema_version"
HEADER_CONTENT_TYPE = "content_type"
HEADER_CONTENT_ENCODING = "content_encoding"
HEADER_PRODUCED_AT = "produced_at"
HEADER_PRODUCER = "producer"
HEADER_SOURCE = "source"
HEADER_RUN_ID = "run_id"
HEADER_TRACEPARENT = "traceparent"
HEADER_PARTITION_KEY = "partition_key"
HEADER_DEDUPE_KEY = "dedupe_key"
HEADER_RETRY_COUNT = "retry_count"
HEADER_DLQ_REASON = "dlq_reason"
HEADER_SCHEMA_HASH = "schema_hash"
HEADER_BLOB_REF = "blob_ref"
HEADER_BLOB_HASH = "blob_hash"
HEADER_BLOB_SIZE = "blob_size"
#: The seed's legacy 32-hex trace id: read when no traceparent is present,
#: never written.
HEADER_TRACE_ID = "trace_id"

CONTENT_TYPE_PROTOBUF = "application/x-protobuf"
ENCODING_GZIP = "gzip"

#: The most headers one message may carry.
MAX_HEADERS = 64
#: The summed length of every header key and value, in bytes.
MAX_HEADER_BYTES = 16 << 10

ENVELOPE_HEADERS = frozenset(
    {
        HEADER_MESSAGE_ID, HEADER_SCHEMA_FQDN, HEADER_SCHEMA_VERSION, HEADER_CONTENT_TYPE,
        HEADER_CONTENT_ENCODING, HEADER_PRODUCED_AT, HEADER_PRODUCER, HEADER_SOURCE, HEADER_RUN_ID,
        HEADER_TRACEPARENT, HEADER_PARTITION_KEY, HEADER_DEDUPE_KEY, HEADER_RETRY_COUNT,
        HEADER_DLQ_REASON, HEADER_SCHEMA_HASH, HEADER_BLOB_REF, HEADER_BLOB_HASH, HEADER_BLOB_SIZE,
        HEADER_TRACE_ID,
    }
)


class HeaderError(ValueError):
    """Names the header that is wrong and why; ``str()`` reads as Go's."""

    def __init__(self, header: str, value: str, reason: str) -> None:
        self.header, self.value, self.reason = header, value, reason
        if value == "":
            text = f"header {header}: {reason}"
        else:
            text = f"header {header}={go_quote(value)}: {reason}"
        super().__init__(text)


def go_quote(s: str) -> str:
    """s quoted as Go's strconv.Quote (and %q) writes it, so messages read
    the same in both languages. Bytes that were not UTF-8 (held as
    surrogate escapes) are written as \\xNN, as Go writes them."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch.isprintable() and not 0xD800 <= o <= 0xDFFF:
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def wire_len(s: str) -> int:
    """The bytes s takes on the wire (bytes that were not UTF-8 count one each)."""
    return len(s.encode("utf-8", "surrogateescape"))


# --- message ids -----------------------------------------------------------

_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


def new_message_id() -> str:
    """A fresh UUIDv7: unique, and sortable by creation time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    h = f"{value:032x}"
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def uuid_version(s: str) -> Optional[int]:
    """The version of a UUID in any form Go's uuid.Parse reads (36 bytes
    with hyphens, 38 with any two characters around them, 45 with a
    urn:uuid: prefix, 32 bare hex), or None for what it refuses."""
    b = s.encode("utf-8", "surrogateescape")
    if len(b) == 45:
        if b[:9].lower() != b"urn:uuid:":
            return None
        b = b[9:]
    elif len(b) == 38:
        b = b[1:-1]
    elif len(b) == 32:
        return int(chr(b[12]), 16) if all(c in _HEXDIGITS for c in b) else None
    if len(b) != 36 or any(b[i] != ord("-") for i in (8, 13, 18, 23)):
        return None
    if not all(c in _HEXDIGITS for i, c in enumerate(b) if i not in (8, 13, 18, 23)):
        return None
    return int(chr(b[14]), 16)


# --- times -----------------------------------------------------------------

_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]+))?Z", re.ASCII)

#: Go's zero time (January 1, year 1, UTC) in Unix nanoseconds: what an
#: unset time reads as, and what Go's validation calls missing.
GO_ZERO_NS = -62135596800 * 1_000_000_000


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def format_time(ns: int) -> str:
    """Unix nanoseconds as produced_at's wire form: RFC 3339 in UTC, with as
    many fractional digits as needed, the year as Go writes it (four digits,
    more past 9999, a sign before 0) (Go's time.RFC3339Nano)."""
    secs, frac = divmod(ns, 1_000_000_000)
    days, rem = divmod(secs, 86400)
    y, m, d = _civil_from_days(days)
    year = f"-{-y:04d}" if y < 0 else f"{y:04d}"
    out = f"{year}-{m:02d}-{d:02d}T{rem // 3600:02d}:{rem // 60 % 60:02d}:{rem % 60:02d}"
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


def parse_time(s: str) -> int:
    """Reads produced_at into Unix nanoseconds; it must be RFC 3339 in UTC."""
    if not s.endswith("Z"):
        raise ValueError("not UTC: write RFC 3339 with a Z suffix, e.g. 2025-09-05T19:31:01Z")
    m = _RFC3339.fullmatch(s)
    bad = ValueError("not RFC 3339, e.g. 2025-09-05T19:31:01Z")
    if m is None:
        raise bad
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month) and hour < 24 and minute < 60 and sec < 60):
        raise bad
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    days = _days_from_civil(year, month, day)
    return ((days * 86400 + hour * 3600 + minute * 60 + sec) * 1_000_000_000) + int(frac)


def now_ns() -> int:
    """The current time in Unix nanoseconds, as produced_at carries it."""
    return time.time_ns()


# --- trace context ---------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]*", re.ASCII)


@dataclass(frozen=True)
class TraceContext:
    """A W3C trace context, written as the traceparent header."""

    trace_id: bytes = bytes(16)
    span_id: bytes = bytes(8)
    flags: int = 0

    @staticmethod
    def new() -> "TraceContext":
        """Starts a new sampled trace with random, non-zero ids."""
        return TraceContext(_nonzero(16), _nonzero(8), 0x01)

    def child(self) -> "TraceContext":
        """A new span in the same trace, for a message published while handling another."""
        return TraceContext(self.trace_id, _nonzero(8), self.flags)

    def valid(self) -> bool:
        """Both ids are non-zero, as the W3C spec requires."""
        return any(self.trace_id) and any(self.span_id)

    def __str__(self) -> str:
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{self.flags:02x}"


def _nonzero(n: int) -> bytes:
    while True:
        b = secrets.token_bytes(n)
        if any(b):
            return b


def parse_traceparent(s: str) -> TraceContext:
    """Reads a version-00 traceparent header."""
    if len(s) != 55 or s[2] != "-" or s[35] != "-" or s[52] != "-":
        raise ValueError("not a traceparent: want 00-<32 hex>-<16 hex>-<2 hex>")
    if s[:2] != "00":
        raise ValueError(f"traceparent version {go_quote(s[:2])} is not supported; want 00")
    if not _HEX.fullmatch(s[3:35]):
        raise ValueError("trace id is not 32 hex digits")
    if not _HEX.fullmatch(s[36:52]):
        raise ValueError("span id is not 16 hex digits")
    if not _HEX.fullmatch(s[53:]):
        raise ValueError("flags are not 2 hex digits")
    tc = TraceContext(bytes.fromhex(s[3:35]), bytes.fromhex(s[36:52]), int(s[53:], 16))
    if not tc.valid():
        raise ValueError("trace and span ids must be non-zero")
    return tc


def _trace_from_legacy_id(s: str) -> TraceContext:
    if len(s) != 32 or not _HEX.fullmatch(s):
        raise ValueError("trace_id is not 32 hex digits")
    trace_id = bytes.fromhex(s)
    if not any(trace_id):
        raise ValueError("trace_id is all zeros")
    return TraceContext(trace_id, _nonzero(8), 0x01)


# --- headers ---------------------------------------------------------------


@dataclass
class Headers:
    """The envelope of one message. produced_at is Unix nanoseconds, None
    when unset (Go's zero time, GO_ZERO_NS, reads as unset too)."""

    message_id: str = ""
    schema_fqdn: str = ""
    schema_version: str = ""
    content_type: str = ""
    content_encoding: str = ""
    produced_at: Optional[int] = None
    producer: str = ""
    source: str = ""
    run_id: str = ""
    trace: TraceContext = field(default_factory=TraceContext)
    partition_key: str = ""
    dedupe_key: str = ""
    retry_count: int = 0
    dlq_reason: str = ""
    schema_hash: str = ""
    blob_ref: str = ""
    blob_hash: str = ""
    blob_size: int = 0
    #: Headers outside the envelope set, carried through unchanged.
    extra: dict[str, str] = field(default_factory=dict)

    def fields(self) -> list[tuple[str, str]]:
        """The wire headers in Go's fixed order: the envelope's, omitting
        empty ones, then every extra header (even empty) sorted by name."""
        out: list[tuple[str, str]] = []

        def add(k: str, v: str) -> None:
            if v != "":
                out.append((k, v))

        add(HEADER_MESSAGE_ID, self.message_id)
        add(HEADER_SCHEMA_FQDN, self.schema_fqdn)
        add(HEADER_SCHEMA_VERSION, self.schema_version)
        add(HEADER_CONTENT_TYPE, self.content_type)
        add(HEADER_CONTENT_ENCODING, self.content_encoding)
        if self.produced_at is not None and self.produced_at != GO_ZERO_NS:
            add(HEADER_PRODUCED_AT, format_time(self.produced_at))
        add(HEADER_PRODUCER, self.producer)
        add(HEADER_SOURCE, self.source)
        add(HEADER_RUN_ID, self.run_id)
        if self.trace.valid():
            add(HEADER_TRACEPARENT, str(self.trace))
        add(HEADER_PARTITION_KEY, self.partition_key)
        add(HEADER_DEDUPE_KEY, self.dedupe_key)
        if self.retry_count > 0:
            add(HEADER_RETRY_COUNT, str(self.retry_count))
        add(HEADER_DLQ_REASON, self.dlq_reason)
        add(HEADER_SCHEMA_HASH, self.schema_hash)
        add(HEADER_BLOB_REF, self.blob_ref)
        add(HEADER_BLOB_HASH, self.blob_hash)
        if self.blob_size > 0:
            add(HEADER_BLOB_SIZE, str(self.blob_size))
        out.extend(sorted(self.extra.items()))
        return out

    def validate(self) -> list[HeaderError]:
        """Every required header present and well formed; [] when valid."""
        errs: list[HeaderError] = []
        if self.message_id == "":
            errs.append(HeaderError(HEADER_MESSAGE_ID, "", "missing"))
        else:
            version = uuid_version(self.message_id)
            if version is None:
                errs.append(HeaderError(HEADER_MESSAGE_ID, self.message_id, "not a UUID"))
            elif version != 7:
                errs.append(HeaderError(HEADER_MESSAGE_ID, self.message_id, f"UUID version {version}; message ids are UUIDv7"))
        for name, value in (
            (HEADER_SCHEMA_FQDN, self.schema_fqdn),
            (HEADER_SCHEMA_VERSION, self.schema_version),
            (HEADER_CONTENT_TYPE, self.content_type),
            (HEADER_PRODUCER, self.producer),
            (HEADER_SOURCE, self.source),
            (HEADER_RUN_ID, self.run_id),
            (HEADER_PARTITION_KEY, self.partition_key),
        ):
            if value == "":
                errs.append(HeaderError(name, "", "missing"))
        if self.produced_at is None or self.produced_at == GO_ZERO_NS:
            errs.append(HeaderError(HEADER_PRODUCED_AT, "", "missing"))
        if not self.trace.valid():
            errs.append(HeaderError(HEADER_TRACEPARENT, str(self.trace), "trace and span ids must be non-zero"))
        if self.content_encoding not in ("", ENCODING_GZIP):
            errs.append(HeaderError(HEADER_CONTENT_ENCODING, self.content_encoding, "only gzip is supported"))
        if self.retry_count < 0:
            errs.append(HeaderError(HEADER_RETRY_COUNT, str(self.retry_count), "negative"))
        if (self.blob_ref == "") != (self.blob_hash == "") or (self.blob_ref != "" and self.blob_size <= 0):
            errs.append(HeaderError(HEADER_BLOB_REF, self.blob_ref, "blob_ref, blob_hash and blob_size go together"))
        return errs

    def check_size(self) -> Optional[HeaderError]:
        """The wire form within MAX_HEADERS and MAX_HEADER_BYTES, else why not."""
        fs = self.fields()
        return _size_error(len(fs), sum(wire_len(k) + wire_len(v) for k, v in fs))


def _size_error(count: int, size: int) -> Optional[HeaderError]:
    if count > MAX_HEADERS:
        return HeaderError("headers", "", f"{count} headers, over the limit of {MAX_HEADERS}")
    if size > MAX_HEADER_BYTES:
        return HeaderError("headers", "", f"{size} bytes of header keys and values, over the limit of {MAX_HEADER_BYTES}")
    return None


def repeated(key: str, n: int) -> HeaderError:
    """The error for a header a message carries n > 1 times."""
    return HeaderError(key, "", f"appears {n} times; each header appears once")


_DECIMAL = re.compile(r"[+-]?[0-9]+", re.ASCII)


def go_int(v: str) -> Optional[int]:
    """v as Go's strconv.Atoi/ParseInt(v, 10, 64) reads it, or None."""
    if not _DECIMAL.fullmatch(v):
        return None
    n = int(v)
    if not -(1 << 63) <= n < (1 << 63):
        return None
    return n


def parse(items: Iterable[tuple[str, str]]) -> tuple[Headers, list[HeaderError]]:
    """Reads headers from their wire form, each name once (use
    ``kafka.parse_headers`` or ``nats.parse`` for clients that can carry a name twice). It fills
    what it can and returns every malformed header, so a bad message can
    still be dead-lettered intact: a malformed value stays in ``extra``
    under its own name."""
    h = Headers()
    errs: list[HeaderError] = []
    count = size = 0
    legacy_trace_id = ""

    def bad(name: str, value: str, reason: str) -> None:
        errs.append(HeaderError(name, value, reason))
        h.extra[name] = value

    for k, v in items:
        count += 1
        size += wire_len(k) + wire_len(v)
        if k == HEADER_MESSAGE_ID:
            h.message_id = v
        elif k == HEADER_SCHEMA_FQDN:
            h.schema_fqdn = v
        elif k == HEADER_SCHEMA_VERSION:
            h.schema_version = v
        elif k == HEADER_CONTENT_TYPE:
            h.content_type = v
        elif k == HEADER_CONTENT_ENCODING:
            h.content_encoding = v
        elif k == HEADER_PRODUCED_AT:
            try:
                h.produced_at = parse_time(v)
            except ValueError as e:
                bad(k, v, str(e))
        elif k == HEADER_PRODUCER:
            h.producer = v
        elif k == HEADER_SOURCE:
            h.source = v
        elif k == HEADER_RUN_ID:
            h.run_id = v
        elif k == HEADER_TRACEPARENT:
            try:
                h.trace = parse_traceparent(v)
            except ValueError as e:
                bad(k, v, str(e))
        elif k == HEADER_TRACE_ID:
            legacy_trace_id = v
        elif k == HEADER_PARTITION_KEY:
            h.partition_key = v
        elif k == HEADER_DEDUPE_KEY:
            h.dedupe_key = v
        elif k == HEADER_RETRY_COUNT:
            n = go_int(v)
            if n is None or n < 0:
                bad(k, v, "not a non-negative integer")
            else:
                h.retry_count = n
        elif k == HEADER_DLQ_REASON:
            h.dlq_reason = v
        elif k == HEADER_SCHEMA_HASH:
            h.schema_hash = v
        elif k == HEADER_BLOB_REF:
            h.blob_ref = v
        elif k == HEADER_BLOB_HASH:
            h.blob_hash = v
        elif k == HEADER_BLOB_SIZE:
            n = go_int(v)
            if n is None or n < 0:
                bad(k, v, "not a non-negative integer")
            else:
                h.blob_size = n
        else:
            h.extra[k] = v
    limit = _size_error(count, size)
    if limit is not None:
        errs.insert(0, limit)  # the limit first, as before the headers it counts
    if not h.trace.valid() and legacy_trace_id != "":
        try:
            h.trace = _trace_from_legacy_id(legacy_trace_id)
        except ValueError as e:
            bad(HEADER_TRACE_ID, legacy_trace_id, str(e))
    elif legacy_trace_id != "":
        h.extra[HEADER_TRACE_ID] = legacy_trace_id
    return h, errs
