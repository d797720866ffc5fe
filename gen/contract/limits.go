package contract

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// QoS classes and the limits a domain inherits from defaults: retention,
// sizes, partitions, dedupe window and retry policies.

// limits are the settings a domain inherits from defaults: when it omits them.
type limits struct {
	SchemaVersion string
	Retention     time.Duration
	// RetentionByEnv overrides Retention per env; RetentionPos is where the
	// retention in force was written, for errors.
	RetentionByEnv map[string]time.Duration
	RetentionPos   Pos
	// ShortRetention is why a prod retention under a week is deliberate.
	ShortRetention string
	MaxPayload     int64
	MaxInflated    int64 // 0: 4 × MaxPayload
	CompressAbove  int64
	Partitions     int
	Replicas       int
	DedupeWindow   time.Duration
	Retry          RetryPolicy
}

func (p *parser) qosClasses(n *yaml.Node) []*QoSClass {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "write qos: as a mapping of class name to {latency_p99: 50ms}", "qos must be a mapping, not %s", kindName(n))
		return nil
	}
	m := p.mapping(n, "qos", nil, nil)
	var out []*QoSClass
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, ok := m[k.Value]; !ok {
			continue // duplicate, already reported
		}
		name, ok := p.ident(k, "qos class")
		if !ok {
			continue
		}
		q := &QoSClass{Name: name, Pos: pos(k)}
		what := fmt.Sprintf("qos class %q", name)
		cm := p.mapping(v, what, qosKeys, []string{"latency_p99"})
		if e, ok := cm["latency_p99"]; ok {
			q.LatencyP99, _ = p.duration(e.val, what+" latency_p99")
		}
		if e, ok := cm["description"]; ok {
			q.Description, _ = p.scalar(e.val, what+" description")
		}
		q.Priority = PriorityNormal
		if e, ok := cm["priority"]; ok {
			p.priority(e.val, what, q)
		}
		if e, ok := cm["max_lag"]; ok {
			if v, ok := p.scalar(e.val, what+" max_lag"); ok {
				n, err := strconv.ParseUint(v, 10, 63)
				if err != nil || n == 0 {
					p.errorf(e.val, "write how many messages a consumer group may fall behind, e.g. 10000", "%s max_lag %q is not a message count", what, v)
				} else {
					q.MaxLag = n
				}
			}
		}
		q.PublishRetry = DefaultPublishRetry
		if e, ok := cm["publish_retry"]; ok {
			p.publishRetry(e.val, what+" publish_retry", &q.PublishRetry)
		}
		out = append(out, q)
	}
	return out
}

// limits reads the inheritable settings of defaults: or a domain into l.
func (p *parser) limits(n *yaml.Node, what string, l *limits, allowed []string) map[string]entry {
	m := p.mapping(n, what, allowed, nil)
	if e, ok := m["schema_version"]; ok {
		if s, ok := p.semver(e.val, what+" schema_version"); ok {
			l.SchemaVersion = s
		}
	}
	if e, ok := m["retention"]; ok {
		p.retention(e.val, what, l)
	}
	if e, ok := m["short_retention"]; ok {
		if s, ok := p.scalar(e.val, what+" short_retention"); ok && strings.TrimSpace(s) != "" {
			l.ShortRetention = s
		} else if ok {
			p.errorf(e.val, "say why a shorter retention is enough", "%s short_retention gives no reason", what)
		}
	}
	if e, ok := m["dedupe_window"]; ok {
		if d, ok := p.duration(e.val, what+" dedupe_window"); ok {
			l.DedupeWindow = d
		}
	}
	if e, ok := m["max_payload"]; ok {
		if s, ok := p.size(e.val, what+" max_payload"); ok {
			l.MaxPayload = s
			if s > MaxPayloadLimit {
				p.errorf(e.val, "keep messages small and send larger payloads as blob pointers (ampybus.WithBlobStore)", "%s max_payload %s is over %s, the most a NATS server carries in one message", what, FormatSize(s), FormatSize(MaxPayloadLimit))
			}
		}
	}
	if e, ok := m["compress_above"]; ok {
		if s, ok := p.size(e.val, what+" compress_above"); ok {
			l.CompressAbove = s
		}
	}
	if e, ok := m["max_inflated"]; ok {
		if s, ok := p.size(e.val, what+" max_inflated"); ok {
			l.MaxInflated = s
			if s > MaxInflatedLimit {
				p.errorf(e.val, "split such payloads: a consumer holds each one whole in memory", "%s max_inflated %s is over %s", what, FormatSize(s), FormatSize(MaxInflatedLimit))
			}
		}
	}
	if l.MaxInflated != 0 && l.MaxInflated < l.MaxPayload {
		at := n
		if e, ok := m["max_inflated"]; ok {
			at = e.val
		}
		p.errorf(at, "set max_inflated at or above max_payload", "%s inflates payloads to at most %s but max_payload is %s", what, FormatSize(l.MaxInflated), FormatSize(l.MaxPayload))
	}
	if e, ok := m["partitions"]; ok {
		if v, ok := p.scalar(e.val, what+" partitions"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				p.errorf(e.val, "write a whole number from 1 to 10000", "%s partitions %q is not a partition count", what, v)
			} else {
				l.Partitions = n
			}
		}
	}
	if e, ok := m["replicas"]; ok {
		if v, ok := p.scalar(e.val, what+" replicas"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 5 {
				p.errorf(e.val, "write 1, 3 or 5 (an odd count keeps a quorum; JetStream allows at most 5)", "%s replicas %q is not a replica count", what, v)
			} else {
				l.Replicas = n
			}
		}
	}
	if e, ok := m["retry"]; ok {
		p.retry(e.val, what+" retry", &l.Retry)
	}
	if l.CompressAbove > l.MaxPayload {
		at := n
		if e, ok := m["compress_above"]; ok {
			at = e.val
		}
		p.errorf(at, "set compress_above below max_payload", "%s compresses above %s but max_payload is %s, so compression never applies", what, FormatSize(l.CompressAbove), FormatSize(l.MaxPayload))
	}
	return m
}

// retry reads a retry: mapping over r; keys it omits keep r's values.
func (p *parser) retry(n *yaml.Node, what string, r *RetryPolicy) {
	m := p.mapping(n, what, retryKeys, nil)
	if e, ok := m["max_attempts"]; ok {
		if v, ok := p.scalar(e.val, what+" max_attempts"); ok {
			if a, err := strconv.Atoi(v); err != nil || a < 1 || a > 1000 {
				p.errorf(e.val, "write a whole number from 1 to 1000", "%s max_attempts %q is not an attempt count", what, v)
			} else {
				r.MaxAttempts = a
			}
		}
	}
	if e, ok := m["backoff"]; ok {
		if d, ok := p.duration(e.val, what+" backoff"); ok {
			r.Backoff = d
		}
	}
	if e, ok := m["max_backoff"]; ok {
		if d, ok := p.duration(e.val, what+" max_backoff"); ok {
			r.MaxBackoff = d
		}
	}
	if r.MaxBackoff < r.Backoff {
		p.errorf(n, "set max_backoff at or above backoff", "%s max_backoff %s is below backoff %s", what, r.MaxBackoff, r.Backoff)
	}
}

// DefaultPublishRetry applies to a QoS class that states no publish_retry.
var DefaultPublishRetry = PublishRetry{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, GiveUpAfter: 10 * time.Second}

func (p *parser) publishRetry(n *yaml.Node, what string, r *PublishRetry) {
	m := p.mapping(n, what, pubRetryKeys, nil)
	for _, f := range []struct {
		key string
		dst *time.Duration
	}{{"backoff", &r.Backoff}, {"max_backoff", &r.MaxBackoff}, {"give_up_after", &r.GiveUpAfter}} {
		if e, ok := m[f.key]; ok {
			if d, ok := p.duration(e.val, what+" "+f.key); ok {
				*f.dst = d
			}
		}
	}
	if r.MaxBackoff < r.Backoff {
		p.errorf(n, "set max_backoff at or above backoff", "%s max_backoff %s is below backoff %s", what, r.MaxBackoff, r.Backoff)
	}
}

func (p *parser) lookupQoS(n *yaml.Node, name string, c *Contract) *QoSClass {
	var names []string
	for _, q := range c.QoS {
		if q.Name == name {
			return q
		}
		names = append(names, q.Name)
	}
	fix := "define it under qos: or use one of " + oneOf(names)
	if s := suggest(name, names); s != "" {
		fix = fmt.Sprintf("did you mean %q?", s)
	}
	if len(names) == 0 {
		fix = "define the class under the top-level qos: mapping"
	}
	p.errorf(n, fix, "unknown qos class %q", name)
	return nil
}
