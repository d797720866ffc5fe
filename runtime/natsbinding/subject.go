package natsbinding

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Subjects carry the partition of their key as a first token:
// ampy.prod.orders.v1.requests with key co_123 in partition 4 of 6 is stored
// as 4.ampy.prod.orders.v1.requests. JetStream can then give each partition
// of a consumer group its own consumer, so one member at a time handles a
// key (see docs/ARCHITECTURE.md, "Consumer groups on NATS"). The partition is
// the one Kafka uses for the same key and count (transport.Partition), and
// only the binding sees it: topics, filters and headers above it are the
// contract's. The stream lists one subject per partition (a leading wildcard
// would overlap JetStream's API), so a publish without the token, or to a
// partition the stream does not have, matches no stream and is refused.

// streamSubjects are the stream's subjects for a topic prefix, a partition
// count and the contract's subtopic shapes ("*.*"; none means any, ">"):
// 0.ampy.dev.bars.v1.*.* and so on for each partition. A publish in no
// shape matches no stream and is refused: JetStream never stores a topic
// no consumer would route.
func streamSubjects(prefix string, partitions int, shapes []string) []string {
	if len(shapes) == 0 {
		shapes = []string{">"}
	}
	out := make([]string, 0, max(partitions, 1)*len(shapes))
	for p := range max(partitions, 1) {
		for _, shape := range shapes {
			out = append(out, strconv.Itoa(p)+"."+prefix+"."+shape)
		}
	}
	return out
}

// prefixTokens is how many tokens a topic prefix has: namespace, env,
// domain, version.
const prefixTokens = 4

// splitStreamSubject inverts streamSubjects for one subject: its prefix and
// shape. ok is false for a subject of another layout.
func splitStreamSubject(subject string) (prefix, shape string, ok bool) {
	toks := strings.Split(subject, ".")
	if len(toks) < 2+prefixTokens {
		return "", "", false
	}
	if _, err := strconv.Atoi(toks[0]); err != nil {
		return "", "", false
	}
	for _, t := range toks[1 : 1+prefixTokens] {
		if t == "*" || t == ">" {
			return "", "", false
		}
	}
	return strings.Join(toks[1:1+prefixTokens], "."), strings.Join(toks[1+prefixTokens:], "."), true
}

// prefixOfStreamSubject is splitStreamSubject's prefix.
func prefixOfStreamSubject(subject string) (string, bool) {
	prefix, _, ok := splitStreamSubject(subject)
	return prefix, ok
}

// Subject is where a message of topic with partition key is stored in a
// stream of the given partition count: 4.ampy.prod.orders.v1.requests. A
// client writing the stream without ampy-bus must publish there.
func Subject(topic, key string, partitions int) string {
	return strconv.Itoa(int(transport.Partition(key, max(partitions, 1)))) + "." + topic
}

// topicOf strips the partition token from a stored subject.
func topicOf(subject string) (topic string, partition int, err error) {
	tok, topic, ok := strings.Cut(subject, ".")
	p, perr := strconv.Atoi(tok)
	if !ok || perr != nil || p < 0 || topic == "" {
		return subject, 0, fmt.Errorf("subject %s has no partition token: it was not published through ampy-bus", subject)
	}
	return topic, p, nil
}

// partitionFilter narrows a topic filter to one partition, or to all (-1).
func partitionFilter(filter string, partition int) string {
	if partition < 0 {
		return "*." + filter
	}
	return strconv.Itoa(partition) + "." + filter
}

// partitionFilters applies partitionFilter to each filter.
func partitionFilters(filters []string, partition int) []string {
	out := make([]string, len(filters))
	for i, f := range filters {
		out[i] = partitionFilter(f, partition)
	}
	return out
}
