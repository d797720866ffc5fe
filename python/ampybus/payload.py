"""Payload bytes as the Go runtime writes and reads them: deterministic
protobuf, gzip above the domain's compress_above (byte-identical to Go's),
limits on size and inflation, and blob pointers checked by hash and size."""

from __future__ import annotations

import hashlib
import warnings
import zlib
from typing import Any, Callable, Optional

from ampybus import envelope, gzipgo, wire
from ampybus.route import ContractError, Route


class PoisonError(ValueError):
    """A message a consumer must dead-letter; str() is its dlq_reason, with
    the same prefix the Go consumer writes (decompression_limit: …)."""


def blob_hash(data: bytes) -> str:
    """The blob_hash of data: "sha256:<hex>"."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encode(route: Route, msg: Any) -> tuple[bytes, str]:
    """The stored bytes of payload msg and their content_encoding ("" or
    "gzip"): gzipped when the marshalled payload is over compress_above,
    exactly as the Go publisher does."""
    raw = wire.marshal(msg)
    if len(raw) > route.max_inflated:
        raise ContractError(f"payload of {len(raw)} bytes is over {route.domain}'s max_inflated of {route.max_inflated}")
    if route.compress_above > 0 and len(raw) > route.compress_above:
        stored, encoding = gzipgo.compress(raw), envelope.ENCODING_GZIP
    else:
        stored, encoding = raw, ""
    if len(stored) > route.max_payload:
        raise ContractError(
            f"payload of {len(stored)} bytes (stored) is over {route.domain}'s max_payload of {route.max_payload}: "
            "send it as a blob pointer"
        )
    return stored, encoding


def inflate(data: bytes, limit: int) -> bytes:
    """Gunzips data as Go's gzip.Reader does (members one after another, and
    nothing else after them), refusing to produce more than limit bytes."""
    if not data:
        raise PoisonError("decode_error: gzip: EOF")
    out = bytearray()
    rest = data
    while True:
        if len(rest) < 10:  # Go reads the 10-byte header whole first
            raise PoisonError("decode_error: gzip: unexpected EOF")
        if rest[:3] != b"\x1f\x8b\x08":
            raise PoisonError("decode_error: gzip: invalid header")
        d = zlib.decompressobj(31)
        try:
            out += d.decompress(rest, limit + 1 - len(out))
            while d.unconsumed_tail and len(out) <= limit:
                out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        except zlib.error as e:
            raise PoisonError(f"decode_error: gzip: {e}") from None
        if len(out) > limit:
            raise PoisonError(
                f"decompression_limit: the gzip payload of {len(data)} bytes inflates past the domain's max_inflated of {limit} bytes"
            )
        if not d.eof:
            raise PoisonError("decode_error: gzip: unexpected EOF")
        rest = d.unused_data
        if not rest:
            return bytes(out)


def decode(
    route: Route,
    h: envelope.Headers,
    stored: bytes,
    fetch_blob: Optional[Callable[[str], bytes]] = None,
) -> Any:
    """The payload of a message whose headers are h: the blob fetched (and
    checked) for a pointer, inflated when gzipped, then unmarshalled into
    the route's payload type. PoisonError says why a message is poison."""
    data = stored
    if h.blob_ref:
        if fetch_blob is None:
            raise PoisonError(f"blob_error: the message points at {h.blob_ref} but no blob store was given")
        if h.blob_size > route.max_inflated:
            raise PoisonError(f"blob_error: blob_size {h.blob_size} is over the domain's max_inflated of {route.max_inflated} bytes")
        data = fetch_blob(h.blob_ref)
        got = blob_hash(data)
        if got != h.blob_hash or len(data) != h.blob_size:
            raise PoisonError(
                f"blob_hash_mismatch: {h.blob_ref} is {len(data)} bytes with {got}; "
                f"the message says {h.blob_size} bytes with {h.blob_hash}"
            )
    if h.content_encoding == envelope.ENCODING_GZIP:
        data = inflate(data, route.max_inflated)
    elif h.content_encoding != "":
        raise PoisonError(f"decode_error: unknown content_encoding {h.content_encoding}")
    try:
        return unmarshal(route.payload, data)
    except ValueError as e:
        raise PoisonError(f"decode_error: {e}") from None


def unmarshal(cls: type, data: bytes) -> Any:
    """data as a message of cls, all of it: ValueError for malformed wire
    data that Go's proto.Unmarshal refuses (field 0, a stray end-group, a
    truncated field), which the C++ backend may pass over with a warning
    and a short count instead of raising."""
    wire.check(cls.DESCRIPTOR, data)
    msg = cls()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            n = msg.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError, and others on corrupt input
        raise ValueError(str(e) or "cannot parse invalid wire-format data") from None
    if n is not None and n != len(data):
        raise ValueError(f"cannot parse invalid wire-format data: stopped at byte {n} of {len(data)}")
    return msg
