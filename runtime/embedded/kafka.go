package embedded

import (
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
