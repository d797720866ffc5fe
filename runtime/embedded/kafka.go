package embedded

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process Kafka cluster (franz-go's kfake) on loopback, for
// development and tests. It speaks the Kafka protocol to any client, kcat
// included, but it is not a performance proxy for a real cluster.
type Kafka struct {
	c *kfake.Cluster
}

// KafkaOptions configure StartKafka; the zero value is one broker on a
// random loopback port, in memory.
type KafkaOptions struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// DataDir persists the cluster; restarting on it recovers topics and offsets.
	DataDir string
	// Brokers is the number of brokers (default 1); replicated topics need more.
	Brokers int
	// SASL users: the cluster requires SASL when any is set. Superusers
	// may do anything; Users only what ACLs grant once ACLs are on.
	Superusers, Users []SASLUser
	// ACLs turns authorization on: every request is checked against ACLs.
	ACLs bool
	// TLS serves the listeners over TLS.
	TLS *tls.Config
}

// SASLUser is one SASL identity of an embedded Kafka cluster.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism, User, Password string
}

// StartKafka starts a cluster on 127.0.0.1, one broker unless asked for more.
func StartKafka(o KafkaOptions) (*Kafka, error) {
	opts := []kfake.Opt{kfake.NumBrokers(max(o.Brokers, 1)), kfake.ClusterID("ampy-bus-embedded"),
		// Real brokers refuse group sessions under 6s unless configured
		// lower; the development broker allows (and reports) 1s, so the
		// bus's 5s failover holds on it.
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "1000"})}
	if o.Port != 0 {
		opts = append(opts, kfake.Ports(o.Port))
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	if len(o.Superusers)+len(o.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
	}
	for _, u := range o.Superusers {
		opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
	}
	for _, u := range o.Users {
		opts = append(opts, kfake.User(u.Mechanism, u.User, u.Password))
	}
	if o.ACLs {
		opts = append(opts, kfake.EnableACLs())
	}
	if o.TLS != nil {
		opts = append(opts, kfake.TLS(o.TLS))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	return &Kafka{c: c}, nil
}

// Brokers are the cluster's host:port addresses.
func (e *Kafka) Brokers() []string { return e.c.ListenAddrs() }

// URL is the kafka:// URL clients open the bus with.
func (e *Kafka) URL() string { return "kafka://" + strings.Join(e.Brokers(), ",") }

// Shutdown stops the cluster.
func (e *Kafka) Shutdown() { e.c.Close() }
