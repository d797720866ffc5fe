"""Protobuf bytes in the Go runtime's field order.

Python serializes a message's fields by field number. Go (protobuf-go,
keeping the historic wire output of golang/protobuf) writes the fields of a
real oneof after all the others, oneof by oneof in declaration order. Both
are valid encodings of the same message, but a Python publisher must put
the same bytes on the wire as a Go one (the seed's "Protobuf identical"),
so ``marshal`` reorders Python's deterministic output field by field, in
every nested message, the way Go orders it.
"""

from __future__ import annotations

from typing import Any

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5


def marshal(msg: Any) -> bytes:
    """msg's deterministic encoding, with fields in Go's order."""
    return _reorder(msg.DESCRIPTOR, msg.SerializeToString(deterministic=True))


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_PROTO3_OPTIONAL: dict[str, frozenset[int]] = {}


def _proto3_optional(desc: Any) -> frozenset[int]:
    """The numbers of desc's proto3 optional fields, read from its
    descriptor proto (the runtime's descriptors do not say)."""
    got = _PROTO3_OPTIONAL.get(desc.full_name)
    if got is None:
        from google.protobuf import descriptor_pb2

        dp = descriptor_pb2.DescriptorProto()
        desc.CopyToProto(dp)
        got = frozenset(f.number for f in dp.field if f.proto3_optional)
        _PROTO3_OPTIONAL[desc.full_name] = got
    return got


def _real_oneof(field: Any) -> Any:
    """field's oneof, unless it is the synthetic one of a proto3 optional
    field, which Go orders as a plain field."""
    oneof = field.containing_oneof
    if oneof is None or field.number in _proto3_optional(field.containing_type):
        return None
    return oneof


def _reorder(desc: Any, b: bytes) -> bytes:
    fields: list[tuple[tuple[int, int, int], int, bytes]] = []
    i, n = 0, len(b)
    while i < n:
        start = i
        tag, i = _varint(b, i)
        number, wire = tag >> 3, tag & 7
        fd = desc.fields_by_number.get(number)
        if wire == _VARINT:
            _, i = _varint(b, i)
            raw = b[start:i]
        elif wire == _I64:
            i += 8
            raw = b[start:i]
        elif wire == _I32:
            i += 4
            raw = b[start:i]
        elif wire == _LEN:
            size, j = _varint(b, i)
            body = b[j : j + size]
            i = j + size
            if fd is not None and fd.message_type is not None:
                body = _reorder(fd.message_type, body)
                raw = b[start:j - len(_encode_varint(size))] + _encode_varint(len(body)) + body
            else:
                raw = b[start:i]
        else:
            # Groups are not written by proto3; keep the rest as it is.
            return b
        if fd is None:
            key = (2, 0, 0)  # unknown fields stay last, as Go writes them
        else:
            oneof = _real_oneof(fd)
            key = (0, 0, number) if oneof is None else (1, oneof.index, number)
        fields.append((key, len(fields), raw))
    fields.sort(key=lambda f: (f[0], f[1]))
    return b"".join(raw for _, _, raw in fields)


def check(desc: Any, b: bytes) -> None:
    """Raises ValueError for wire data Go's proto.Unmarshal refuses: a
    truncated field, field number 0, wire type 6 or 7, an end-group without
    its start, in desc's fields and every nested message."""
    _check(desc, b, 0, len(b), None)


def _check(desc: Any, b: bytes, i: int, end: int, group: Any) -> int:
    bad = ValueError("cannot parse invalid wire-format data")
    while i < end:
        try:
            tag, i = _varint(b, i)
        except IndexError:
            raise bad from None
        if i > end:
            raise bad
        number, wt = tag >> 3, tag & 7
        if number == 0 or wt in (6, 7):
            raise bad
        if wt == _EGROUP:
            if group != number:
                raise bad
            return i
        if wt == _VARINT:
            try:
                _, i = _varint(b, i)
            except IndexError:
                raise bad from None
        elif wt == _I64:
            i += 8
        elif wt == _I32:
            i += 4
        elif wt == _LEN:
            try:
                size, i = _varint(b, i)
            except IndexError:
                raise bad from None
            if i + size > end:
                raise bad
            fd = desc.fields_by_number.get(number) if desc is not None else None
            if fd is not None and fd.message_type is not None:
                _check(fd.message_type, b, i, i + size, None)
            i += size
        elif wt == _SGROUP:
            i = _check(None, b, i, end, number)
            continue
        if i > end:
            raise bad
    if group is not None:
        raise bad
    return i
