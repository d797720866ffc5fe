"""The ampy-bus runtime for Python: the envelope headers, payload encoding
(gzip byte-identical to Go's), the Kafka partitioner and the topic and key
rules the generated contract modules use. See the repository's README,
"Python", for publishing and consuming with confluent-kafka or nats-py."""

__all__ = ["envelope", "fixture", "gzipgo", "kafka", "nats", "partition", "payload", "route", "wire"]
