"""The Kafka partition of a record key, as the Go side and the Java client
choose it.

The Go binding partitions with franz-go's sticky key partitioner, which
hashes a key with Kafka's murmur2 exactly as the Java client does:
``(murmur2(key) & 0x7fffffff) % partitions``. librdkafka's default
(``consistent_random``, CRC32) would put the same key elsewhere, so Python
producers pass the partition this module computes.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of data (org.apache.kafka.common.utils.Utils),
    as an unsigned 32-bit value."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition a record with this key goes to among partitions."""
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions
