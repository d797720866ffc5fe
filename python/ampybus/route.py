"""What the generated domain modules share: topic tokens, subtopics, keys.

A generated module (``ampybus_contract.bars``) states one domain of the
contract; this module holds the rules every domain follows, written once,
with the same verdicts as the Go runtime (``runtime/ampybus``): a token Go
refuses is refused here, a key Go derives is derived here byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from ampybus.envelope import go_quote

#: Unicode's White_Space characters: Go's unicode.IsSpace, which Python's
#: str.isspace does not match exactly.
_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


class ContractError(ValueError):
    """The message or topic breaks the contract (Go's ErrContract): a bad
    token, a subtopic that does not fit its pattern, a key field unset.
    str() starts "contract violation: ", as Go's wrapped errors do."""

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__("contract violation: " + message)


class TokenError(ContractError):
    """A subtopic parameter that is not a valid topic token."""

    def __init__(self, param: str, value: str) -> None:
        self.param, self.value = param, value
        why = "is empty" if value == "" else "must not contain '.', '*', '>', whitespace or control characters"
        super().__init__(f"subtopic parameter {param}={_quote(value)} {why}")


def _quote(s: str) -> str:
    """s in quotes with its quotes escaped, as Go's ampybus.quote writes it."""
    return '"' + s.replace('"', '\\"') + '"'


def valid_token(s: str) -> bool:
    """Whether s can be one token of a topic: non-empty, with no '.', '*',
    '>', whitespace or control characters (Go's ampybus.ValidToken)."""
    if s == "":
        return False
    for ch in s:
        o = ord(ch)
        if ch in ".*>" or o < 0x20 or o == 0x7F or ch in _WHITE_SPACE:
            return False
        if 0xD800 <= o <= 0xDFFF:  # a lone surrogate is not valid UTF-8
            return False
    return True


def check_token(param: str, value: str) -> str:
    """Returns value when it is a valid token for param; raises TokenError."""
    if not isinstance(value, str) or not valid_token(value):
        raise TokenError(param, value if isinstance(value, str) else repr(value))
    return value


def prefix(namespace: str, env: str, domain: str, version: str, envs: Sequence[str]) -> str:
    """A domain's topic prefix in env: {namespace}.{env}.{domain}.{version},
    the Kafka topic and the start of every NATS subject of the domain."""
    if env not in envs:
        raise ContractError(f"env {_quote(env)} is not one of the contract's: {', '.join(envs)}")
    return f"{namespace}.{env}.{domain}.{version}"


def split_subtopic(subtopic: str, pattern: str) -> dict[str, str]:
    """The parameters of subtopic against pattern ({mic}.{symbol}): each
    literal token must match and each parameter be a valid token."""
    # The shape first (count and literals), as Go's ParseSubtopic does, then
    # each parameter's token.
    if not fits(pattern, subtopic):
        raise ContractError(f"subtopic {go_quote(subtopic)} does not match {pattern}")
    return {t[1:-1]: check_token(t[1:-1], p) for t, p in zip(pattern.split("."), subtopic.split(".")) if _is_param(t)}


def _is_param(token: str) -> bool:
    return token.startswith("{") and token.endswith("}")


def fits(pattern: str, subtopic: str) -> bool:
    """Whether subtopic has pattern's shape: its token count and literals
    (the parameters' tokens are not checked)."""
    tokens, parts = pattern.split("."), subtopic.split(".")
    return len(tokens) == len(parts) and all(_is_param(t) or t == p for t, p in zip(tokens, parts))


def pattern_of(pattern: str, given: dict[str, str]) -> str:
    """A subscription pattern relative to the domain: the given parameters
    in place, * for every other one ({mic}.* for {mic}.{symbol})."""
    out = []
    for tok in pattern.split("."):
        if _is_param(tok):
            name = tok[1:-1]
            out.append(check_token(name, given[name]) if name in given else "*")
        else:
            out.append(tok)
    return ".".join(out)


@dataclass(frozen=True)
class Keys:
    """The keys the contract derives from a payload: the partition key (the
    Kafka record key, the key ordering holds per) and the dedupe key ("" when
    the contract derives none)."""

    partition: str
    dedupe: str = ""


def timestamp_text(ts: Any) -> str:
    """A google.protobuf.Timestamp as Go writes it in keys: RFC 3339 in UTC
    with as many fractional digits as needed (time.RFC3339Nano)."""
    from ampybus.envelope import format_time

    return format_time(int(ts.seconds) * 1_000_000_000 + int(ts.nanos))


def enum_text(parent: Any, field: str) -> str:
    """Enum field of parent as Go's String() writes it: the value's name,
    or its number when the schema does not know it."""
    value = getattr(parent, field)
    desc = parent.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(value)
    return desc.name if desc is not None else str(value)


def bool_text(value: bool) -> str:
    """A bool as Go's strconv.FormatBool writes it."""
    return "true" if value else "false"


def check_bind(param: str, want: str, got: str, field: str) -> None:
    """A payload field bound to a subtopic parameter must equal it."""
    if got != want:
        raise ContractError(f"payload {field} {go_quote(got)} does not match subtopic {{{param}}} {go_quote(want)}")


def each(m: Any, path: Sequence[str]) -> Iterator[tuple[Any, str, Any]]:
    """Every value a field path reads, with where it is (bars[2].security.symbol)
    and the leaf's field descriptor, as Go's generated walks read them: every
    element of a repeated field, nothing under a oneof member that is not
    set, None for an unset message at the end of the path."""

    def walk(msg: Any, i: int, where: str) -> Iterator[tuple[Any, str, Any]]:
        name = path[i]
        fd = msg.DESCRIPTOR.fields_by_name[name]
        where = f"{where}.{name}" if where else name
        last = i == len(path) - 1
        if _repeated(fd):
            for j, el in enumerate(getattr(msg, name)):
                if last:
                    yield el, f"{where}[{j}]", fd
                else:
                    yield from walk(el, i + 1, f"{where}[{j}]")
            return
        is_message = fd.message_type is not None
        oneof = fd.containing_oneof
        if not last and is_message and oneof is not None and not _synthetic(oneof) and not msg.HasField(name):
            return
        if last:
            yield (None if is_message and not msg.HasField(name) else getattr(msg, name)), where, fd
            return
        yield from walk(getattr(msg, name), i + 1, where)

    return walk(m, 0, "")


def _repeated(fd: Any) -> bool:
    """Whether a field is repeated (is_repeated on protobuf 5.28+, label before)."""
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


def _synthetic(oneof: Any) -> bool:
    """A proto3 optional field's oneof, which is not a real choice."""
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name


def check_bind_each(param: str, want: str, m: Any, path: Sequence[str]) -> None:
    """Every value a bound path reads (every bar's security.symbol) must
    equal the subtopic parameter."""
    for got, where, _ in each(m, path):
        check_bind(param, want, got, where)


def key_field(m: Any, path: Sequence[str], what: str, template: str, optional: bool = False) -> str:
    """The key text of a field read through repeated fields (or an optional
    Timestamp): every element must give the same text, and at least one must
    have the field unless it is optional."""
    text, seen = "", False
    for value, where, fd in each(m, path):
        if fd.message_type is not None:  # a Timestamp
            if value is None and optional:
                continue  # an element without the time says nothing about the key
            if value is None:
                raise ContractError(f"{what} {template} needs payload field {where}, which is unset")
            got = timestamp_text(value)
        elif fd.type == fd.TYPE_STRING:
            if value == "" and not optional:
                raise ContractError(f"{what} {template} needs payload field {where}, which is empty")
            got = value
        elif fd.enum_type is not None:
            ev = fd.enum_type.values_by_number.get(value)
            got = ev.name if ev is not None else str(value)
        elif fd.type == fd.TYPE_BOOL:
            got = bool_text(value)
        else:
            got = str(value)
        if seen and got != text:
            raise ContractError(
                f"{what} {template} needs one {'.'.join(path)} for the whole message, "
                f"but {where} is {go_quote(got)} and an earlier one {go_quote(text)}"
            )
        text, seen = got, True
    if not seen and not optional:
        raise ContractError(f"{what} {template} needs payload field {'.'.join(path)}, which no element has")
    return text


@dataclass(frozen=True)
class Route:
    """One subtopic of a domain as a generated module states it: what a
    publisher needs to build a message and a consumer to check one."""

    namespace: str
    domain: str
    version: str
    envs: tuple[str, ...]
    partitions: int
    max_payload: int
    max_inflated: int
    compress_above: int
    pattern: str
    schema_fqdn: str
    schema_version: str
    schema_hash: str
    payload: type
    parse_subtopic: Callable[[str], Any]
    keys: Callable[[Any, Any], Keys]
    name: str = ""

    def prefix(self, env: str) -> str:
        """The domain's topic prefix in env (the Kafka topic)."""
        return prefix(self.namespace, env, self.domain, self.version, self.envs)

    def topic(self, env: str, subtopic: Any) -> str:
        """The full topic of subtopic in env."""
        return self.prefix(env) + "." + str(subtopic)

    def subtopic_of(self, topic: str, env: Optional[str] = None) -> Any:
        """The typed subtopic of a full topic of this domain."""
        envs = (env,) if env is not None else self.envs
        for e in envs:
            p = self.prefix(e) + "."
            if topic.startswith(p):
                return self.parse_subtopic(topic[len(p):])
        raise ContractError(f"topic {_quote(topic)} is not under {self.namespace}.{{env}}.{self.domain}.{self.version}")


@dataclass(frozen=True)
class Raw:
    """A subtopic that carries opaque bytes (the dead-letter queue's): its
    topics, without a payload type or keys."""

    namespace: str
    domain: str
    version: str
    envs: tuple[str, ...]
    pattern: str
    parse_subtopic: Callable[[str], Any]
    name: str = ""

    def prefix(self, env: str) -> str:
        """The domain's topic prefix in env."""
        return prefix(self.namespace, env, self.domain, self.version, self.envs)

    def topic(self, env: str, subtopic: Any) -> str:
        """The full topic of subtopic in env."""
        return self.prefix(env) + "." + str(subtopic)

    def prefix_of(self, topic: str) -> str:
        """The prefix (in its env) that topic starts with, or ""."""
        for env in self.envs:
            p = self.prefix(env)
            if topic.startswith(p + "."):
                return p
        return ""
