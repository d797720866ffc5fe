"""The Python side of TestKafkaAcrossLanguages, through confluent-kafka.

  kafka_roundtrip.py consume BOOTSTRAP ENV COUNT
      reads COUNT bars records from the start of every partition, checks each
      as a Go consumer does (ampybus.kafka.read) and prints one JSON line per
      record: message id, partition, key, subtopic, trace id, volume.
  kafka_roundtrip.py produce BOOTSTRAP ENV COUNT TRACEPARENT
      publishes COUNT bars batches continuing the given trace and prints one
      JSON line per record: message id, partition, key, subtopic.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from ampybus import envelope, kafka
from ampybus_contract import bars


def consume(bootstrap: str, env: str, count: int) -> None:
    topic = bars.prefix(env)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-check", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(bars.PARTITIONS)])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < count and time.monotonic() < deadline:
        r = c.poll(0.5)
        if r is None:
            continue
        if r.error() is not None:
            raise SystemExit(f"consume: {r.error()}")
        m = kafka.read(bars.ROUTE, r.topic(), r.key(), r.value(), r.headers())
        print(json.dumps({
            "message_id": m.headers.message_id, "partition": r.partition(), "key": r.key().decode(),
            "subtopic": str(m.subtopic), "trace_id": m.headers.trace.trace_id.hex(),
            "volume": m.payload.bars[0].volume,
        }), flush=True)
        seen += 1
    c.close()
    if seen < count:
        raise SystemExit(f"consume: {seen} of {count} records within 60s")


def produce(bootstrap: str, env: str, count: int, traceparent: str) -> None:
    trace = envelope.parse_traceparent(traceparent)
    p = Producer({"bootstrap.servers": bootstrap})
    failed: list[str] = []

    def done(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    for i in range(count):
        sub = bars.Subtopic("XNAS", f"PY{i % 7}")
        batch = bars.BarBatch()
        bar = batch.bars.add()
        bar.security.symbol, bar.security.mic = sub.symbol, sub.mic
        bar.event_time.seconds = 1_757_100_000 + i
        bar.volume = 1000 + i
        rec = kafka.record(bars.ROUTE, env, sub, batch, producer="py-check@local", source="py-check", trace=trace)
        kafka.produce(p, rec, on_delivery=done)
        print(json.dumps({"message_id": rec.envelope.message_id, "partition": rec.partition,
                          "key": rec.key.decode(), "subtopic": str(sub)}), flush=True)
    left = p.flush(30)
    if left or failed:
        raise SystemExit(f"produce: {left} undelivered, failures {failed}")


if __name__ == "__main__":
    mode, bootstrap, env, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "consume":
        consume(bootstrap, env, count)
    else:
        produce(bootstrap, env, count, sys.argv[5])
