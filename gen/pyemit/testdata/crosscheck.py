"""Answers the cross-language cases a Go test writes (crosslang_test.go)
with the Python runtime and the generated package: the Go test compares
every answer with Go's own. Usage: crosscheck.py CASES.json ANSWERS.json"""

from __future__ import annotations

import base64
import json
import sys

import ampybus_contract
from ampybus import envelope, fixture, gzipgo, payload, route, wire
from ampybus.partition import partition_for


def header_verdict(items: list[list[str]]) -> list[str]:
    h, errs = envelope.parse([(k, v) for k, v in items])
    errs += h.validate()
    return sorted({e.header for e in errs})


def fixture_answer(c: dict) -> dict:
    out: dict = {"headers": header_verdict(c["headers"])}
    try:
        r, st = ampybus_contract.resolve(c["topic"])
    except route.ContractError:
        r = None
    if not isinstance(r, route.Route):
        out["route"] = "none"
        return out
    out["route"] = r.schema_fqdn
    stored = base64.b64decode(c["stored"])
    h, _ = envelope.parse([(k, v) for k, v in c["headers"]])
    try:
        msg = payload.decode(r, h, stored, None)
    except payload.PoisonError as e:
        out["poison"] = str(e).split(":")[0]
        return out
    out["reserialized"] = base64.b64encode(wire.marshal(msg)).decode()
    try:
        k = r.keys(st, msg)
        out["keys"] = [k.partition, k.dedupe]
    except route.ContractError as e:
        out["key_error"] = str(e)
    if h.content_encoding == envelope.ENCODING_GZIP:
        out["regzipped"] = base64.b64encode(gzipgo.compress(payload.inflate(stored, r.max_inflated))).decode()
    return out


def header_errors(items: list[list[str]]) -> list[str]:
    """Every header error's full text, as Go writes it."""
    h, errs = envelope.parse([(k, v) for k, v in items])
    return sorted(str(e) for e in errs + h.validate())


def unmarshal_ok(fqdn: str, data: bytes) -> bool:
    r = next(r for r in ampybus_contract.routes() if isinstance(r, route.Route) and r.schema_fqdn == fqdn)
    try:
        payload.unmarshal(r.payload, data)
        return True
    except ValueError:
        return False


def inflate_answer(data: bytes) -> str:
    """The inflated bytes (base64), or the reason's kind."""
    try:
        return base64.b64encode(payload.inflate(data, 1000)).decode()
    except payload.PoisonError as e:
        return str(e).split(":")[0]


def fixture_verdict(path: str) -> list[str]:
    """The fields fixture.validate names for the fixture file at path."""
    try:
        f = fixture.load(path)
    except ValueError:
        return ["unreadable"]
    return sorted({p.field for p in fixture.validate(ampybus_contract.resolve, f)})


def keys_answer(c: dict) -> str:
    """The keys of a payload on a topic as "partition|dedupe", or the error."""
    r, st = ampybus_contract.resolve(c["topic"])
    msg = payload.unmarshal(r.payload, base64.b64decode(c["payload"] or ""))
    try:
        k = r.keys(st, msg)
    except route.ContractError as e:
        return "error: " + str(e)
    return f"partition={k.partition} dedupe={k.dedupe}"


def main() -> None:
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    answers = {
        "fixtures": [fixture_answer(c) for c in cases["fixtures"]],
        "headers": [header_verdict(c) for c in cases["headers"]],
        "partitions": [partition_for(base64.b64decode(c["key"]), c["n"]) for c in cases["partitions"]],
        "tokens": [route.valid_token(t) for t in cases["tokens"]],
        "format_times": [envelope.format_time(ns) for ns in cases["format_times"]],
        "parse_times": [],
        "gzip": [base64.b64encode(gzipgo.compress(base64.b64decode(d))).decode() for d in cases["gzip"]],
        "verdicts": [fixture_verdict(p) for p in cases["verdicts"]],
        "timestamps": [envelope.format_time(sec * 1_000_000_000 + ns) for sec, ns in cases["timestamps"]],
        "unmarshal": [unmarshal_ok(c["fqdn"], base64.b64decode(c["data"])) for c in cases["unmarshal"]],
        "inflate": [inflate_answer(base64.b64decode(d or "")) for d in cases["inflate"]],
        "header_errors": [header_errors(c) for c in cases["headers"]],
        "keys": [keys_answer(c) for c in cases["keys"]],
    }
    for s in cases["parse_times"]:
        try:
            answers["parse_times"].append(list(divmod(envelope.parse_time(s), 1_000_000_000)))
        except ValueError:
            answers["parse_times"].append(None)
    with open(sys.argv[2], "w") as f:
        json.dump(answers, f)


if __name__ == "__main__":
    main()
