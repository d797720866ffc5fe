package embedded

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSCluster is an in-process JetStream cluster on loopback: real nats-server
// nodes joined by routes, so replicated streams, leader elections and node
// failures behave as in production. For development (ampybusctl dev
// --cluster 3) and tests.
type NATSCluster struct {
	dir     string
	ownsDir bool
	mu      sync.Mutex
	nodes   []*clusterNode
}

type clusterNode struct {
	opts *server.Options
	srv  *server.Server // nil while stopped
}

// NATSClusterOptions configure StartNATSCluster; the zero value is three nodes on
// free loopback ports with a temporary store.
type NATSClusterOptions struct {
	// Nodes is the number of servers (default 3).
	Nodes int
	// Ports are the client ports, one per node; empty picks free ones.
	Ports []int
	// StoreDir keeps each node's data under StoreDir/n1, n2, …; empty means
	// a temporary directory removed on Shutdown.
	StoreDir string
}

// StartNATSCluster starts the nodes and waits until JetStream has a meta leader.
func StartNATSCluster(o NATSClusterOptions) (*NATSCluster, error) {
	n := max(o.Nodes, 1)
	if len(o.Ports) != 0 && len(o.Ports) != n {
		return nil, fmt.Errorf("embedded nats cluster: %d ports for %d nodes", len(o.Ports), n)
	}
	c := &NATSCluster{dir: o.StoreDir}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "ampybus-nats-cluster-*")
		if err != nil {
			return nil, fmt.Errorf("embedded nats cluster: %w", err)
		}
		c.dir, c.ownsDir = d, true
	}
	routePorts, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	clientPorts := o.Ports
	if len(clientPorts) == 0 {
		if clientPorts, err = freePorts(n); err != nil {
			return nil, err
		}
	}
	routes := make([]string, n)
	for i, p := range routePorts {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	for i := range n {
		name := "n" + strconv.Itoa(i+1)
		c.nodes = append(c.nodes, &clusterNode{opts: &server.Options{
			ServerName: "ampybus-" + name,
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   filepath.Join(c.dir, name),
			MaxPayload: 8 << 20,
			Cluster:    server.ClusterOpts{Name: "ampybus", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs:     true,
			NoLog:      true,
			// As StartNATS: a cut-off group member lets go within seconds.
			PingInterval: GroupPingInterval,
			MaxPingsOut:  GroupMaxPingsOut,
		}})
	}
	for i := range c.nodes {
		if err := c.Start(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.waitForQuorum(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// freePorts finds n free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("embedded nats cluster: free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Start starts node i (again, after Stop) on its ports and store.
func (c *NATSCluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodes[i]
	if nd.srv != nil {
		return nil
	}
	opts := *nd.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("embedded nats node %s: %w", opts.ServerName, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("embedded nats node %s: not ready after 10s", opts.ServerName)
	}
	nd.srv = srv
	return nil
}

// Stop stops node i as a failure would; its store stays for Start.
func (c *NATSCluster) Stop(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// URL lists every node's client URL, comma-separated, for clients that
// reconnect to whichever node is up.
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(nd.opts.Port)
	}
	return strings.Join(urls, ",")
}

// Nodes is the number of nodes.
func (c *NATSCluster) Nodes() int { return len(c.nodes) }

// StreamLeader is the index of the node leading stream, or -1 when none
// does (yet).
func (c *NATSCluster) StreamLeader(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.srv != nil && nd.srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// waitForQuorum waits until the meta leader sees every node with JetStream
// and every node is current, so a replicated stream can be placed at once.
func (c *NATSCluster) waitForQuorum(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c.formed() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("embedded nats cluster: JetStream did not form on every node within " + timeout.String())
}

func (c *NATSCluster) formed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := 0
	for _, nd := range c.nodes {
		if nd.srv == nil || !nd.srv.JetStreamIsCurrent() {
			return false
		}
		if nd.srv.JetStreamIsLeader() {
			seen = len(nd.srv.JetStreamClusterPeers())
		}
	}
	return seen == len(c.nodes)
}

// Shutdown stops every node and removes a temporary store.
func (c *NATSCluster) Shutdown() {
	for i := range c.nodes {
		c.Stop(i)
	}
	if c.ownsDir {
		os.RemoveAll(c.dir)
	}
}
