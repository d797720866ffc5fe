package main_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// A team's own contract and protos, and the rights and audit built from a
// contract.

// ampybusctl serves another team's bus: its contract and protos read at run
// time (--contract, --proto_path, or the environment), every command on
// both transports, the built binary run as a subprocess.
func TestForeignContract(t *testing.T) {
	contractFile, err := filepath.Abs("testdata/foreign/contract.yaml")
	require.NoError(t, err)
	protos, err := filepath.Abs("../ampybus-gen/testdata/service/proto")
	require.NoError(t, err)
	for name, url := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Another team's contract: its streams are provisioned as it goes.
			env := []string{"AMPYBUS_URL=" + url, "AMPYBUS_CONTRACT=" + contractFile, "AMPYBUS_PROTO_PATH=" + protos, "AMPYBUS_PROVISION=1"}
			who := []string{"--producer", "cx-feed@host-1", "--source", "cx-feed"}

			out := ok(t, env, "list-topics", "--env", "dev")
			assert.Regexp(t, `(?m)^dev\s+cx\.dev\.trades\.v1\s+no`, out)
			assert.Regexp(t, `(?m)^dev\s+cx\.dev\.trades\.v2\s+no`, out)
			ok(t, env, "ensure-topic", "--topic", "cx.dev.trades.v2")
			out = ok(t, env, "describe-topic", "--topic", "cx.dev.trades.v2")
			assert.Contains(t, out, "carries cx.market.v2.Trade 2.0.0")

			out = ok(t, env, append([]string{"pub", "--topic", "cx.dev.trades.v1.XCX.ABC", "--payload", `{"venue":"XCX","symbol":"ABC","trade_id":"t-1","seq":"7","price_e4":"1234500"}`}, who...)...)
			assert.Contains(t, out, "partition_key XCX.ABC")
			out = ok(t, env, append([]string{"pub-empty", "--topic", "cx.dev.trades.v2.XCX.ABC", "--pk", "XCX.ABC"}, who...)...)
			assert.Regexp(t, `^published cx.dev.trades.v2.XCX.ABC .* partition_key XCX.ABC`, out)
			out = ok(t, env, "consume", "--topic", "cx.dev.trades.v1.XCX.ABC", "--max", "10", "--decode")
			assert.Contains(t, out, "schema_fqdn         cx.market.v1.Trade")
			assert.Contains(t, out, `"trade_id": "t-1"`)
			out = ok(t, env, "sub", "--subject", "cx.dev.trades.*.>", "--from", "first", "--max", "2")
			assert.Contains(t, out, "── cx.dev.trades.v1.XCX.ABC")
			assert.Contains(t, out, "── cx.dev.trades.v2.XCX.ABC")

			// A poison message goes to cx's DLQ through a consumer of the
			// run-time catalog; the CLI inspects and redrives it.
			out = ok(t, env, append([]string{"poison", "--topic", "cx.dev.trades.v1.XCX.ABC", "--pk", "XCX.ABC"}, who...)...)
			assert.Contains(t, out, "cx.dev.dlq.v1.trades")
			deadLetterForeign(t, url, contractFile, protos)
			dump := t.TempDir()
			out = ok(t, env, "dlq-inspect", "--subject", "cx.dev.dlq.v1.>", "--max", "10", "--decode", "--outdir", dump)
			assert.Contains(t, out, "dlq_original_topic  cx.dev.trades.v1.XCX.ABC")
			dumped, _ := filepath.Glob(filepath.Join(dump, "*.json"))
			require.Len(t, dumped, 1)
			r := ctl(t, []string{"AMPYBUS_CONTRACT=" + contractFile, "AMPYBUS_PROTO_PATH=" + protos}, "validate-fixture", "--file", dumped[0])
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stdout, "does not decode as cx.market.v1.Trade")
			out = ok(t, env, "dlq-redrive", "--subject", "cx.dev.dlq.v1.>", "--max", "5")
			assert.Regexp(t, `redriven cx.dev.dlq.v1.trades seq \d+ → cx.dev.trades.v1.XCX.ABC seq \d+`, out)

			out = ok(t, env, append([]string{"bench-pub", "--topic", "cx.dev.trades.v1.XCX.ABC", "--pk", "XCX.ABC", "--count", "50", "--concurrency", "2", "--size", "64"}, who...)...)
			assert.Contains(t, out, "Published 50 messages")

			// replay counts its window; this contract has no control topic to post on.
			from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
			out = ok(t, env, "replay", "--subject", "cx.dev.trades.v1.>", "--start", from, "--end", to, "--reason", "gap", "--dry-run")
			assert.Contains(t, out, "on 1 key(s)")
			r = ctl(t, env, "replay", "--subject", "cx.dev.trades.v1.>", "--start", from, "--end", to, "--reason", "gap")
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stderr, "the contract has no control subtopic carrying ampy.control.v1.ReplayRequest")

			// The flags do what the environment does; the built-in contract
			// knows nothing of cx.
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "describe-topic", "--topic", "cx.dev.trades.v1", "--contract", contractFile, "--proto_path", protos)
			assert.Equal(t, 0, r.code, r.stderr)
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "describe-topic", "--topic", "cx.dev.trades.v2", "--contract", contractFile, "--descriptor_set_in", descriptorSet(t, protos))
			assert.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, "carries cx.market.v2.Trade 2.0.0", "from a descriptor set, as buf or protoc write it")
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "describe-topic", "--topic", "cx.dev.trades.v1")
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stderr, `subject "cx.dev.trades.v1.>" is outside the contract`)

			// fixtures writes a skeleton per typed subtopic; they validate and publish.
			fx := t.TempDir()
			out = ok(t, env, "fixtures", "--out", fx)
			assert.Contains(t, out, "wrote 2 skeleton fixtures")
			assert.Contains(t, ok(t, env, "fixtures", "--out", fx, "--check"), "are current")
			r = ctl(t, env, "validate-fixture", "--dir", fx)
			assert.Equal(t, 0, r.code, r.stdout)
			assert.Contains(t, r.stdout, "cx.dev.trades.v2.VENUE.SYMBOL")
			out = ok(t, env, "pub", "--fixture", filepath.Join(fx, "trades", "v1", "skeleton.json"))
			assert.Contains(t, out, "published cx.dev.trades.v1.VENUE.SYMBOL")
		})
	}
}

// deadLetterForeign runs a consumer of the foreign contract's v1 trades,
// read at run time, until it has dead-lettered one message.
func deadLetterForeign(t *testing.T, url, contractFile, protos string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schemas, err := protoset.Load(ctx, protoset.Options{ProtoPaths: []string{protos}})
	require.NoError(t, err)
	c, err := contract.Load(contractFile, schemas)
	require.NoError(t, err)
	tp, err := dynamic.Catalog(c).Resolve("cx.dev.trades.v1.XCX.ABC")
	require.NoError(t, err)
	// The team's consumer owns its domains, dead-letter queue included.
	b, err := ampybus.Open(ctx, url, ampybus.WithEnv("dev"), ampybus.WithLogger(slog.New(slog.DiscardHandler)), ampybus.WithProvisioning())
	require.NoError(t, err)
	defer b.Close()
	sub, err := tp.Route.Subscribe(ctx, b, "*.*", func(context.Context, *ampybus.AnyMessage) error { return nil },
		ampybus.Durable("cx-consumer"), ampybus.DeliverAll())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().DeadLettered == 1 }, 20*time.Second, 10*time.Millisecond, "%+v", sub.Stats())
	require.NoError(t, sub.Stop())
}

// descriptorSet writes the protos under dir as a FileDescriptorSet with
// their imports, as buf build -o does.
func descriptorSet(t *testing.T, dir string) string {
	t.Helper()
	reg, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{dir}})
	require.NoError(t, err)
	var set descriptorpb.FileDescriptorSet
	reg.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
		return true
	})
	data, err := proto.Marshal(&set)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "schemas.binpb")
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

// acl prints what the contract's services may do on each broker, and
// apply creates the Kafka ACLs on the cluster.
func TestACL(t *testing.T) {
	out := ok(t, nil, "acl", "--env", "prod", "--service", "ampy-oms")
	assert.Contains(t, out, `user: "ampy-oms"`)
	assert.Contains(t, out, `"*.ampy.prod.orders.v1.requests"`)
	assert.Contains(t, out, "User:ampy-oms allow write on topic ampy.prod.orders.v1 (literal)")
	assert.NotContains(t, out, "User:broker-alpaca")
	r := ctl(t, nil, "acl", "--env", "qa")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "the contract's envs are [dev paper prod]")

	k, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	defer k.Shutdown()
	out = ok(t, nil, "acl", "apply", "--bus", k.URL(), "--env", "prod")
	assert.Regexp(t, `^applied \d+ ACLs for 12 service\(s\) in env prod`, out)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	described, err := kadm.NewClient(cl).DescribeACLs(ctx, kadm.NewACLs().Allow("User:ampy-oms").AllowHosts("*").Topics("ampy.prod.orders.v1").
		Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral))
	require.NoError(t, err)
	require.Len(t, described, 1)
	require.NoError(t, described[0].Err)
	assert.Len(t, described[0].Described, 1, "the OMS may write its orders topic")
}

// audit reconstructs the session the demo played, from another process.
func TestAuditCommand(t *testing.T) {
	url := brokers(t)["nats"]
	start := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	ok(t, nil, "demo", "--bus", url)
	end := time.Now().UTC().Add(2 * time.Second).Format(time.RFC3339Nano)
	out := ok(t, nil, "audit", "--bus", url, "--env", "dev", "--start", start, "--end", end)
	assert.Contains(t, out, "order co_demo_001  account ALPACA-LIVE-01  AAPL.XNAS  filled 100.0000")
	assert.Contains(t, out, "redriven from ampy.dev.dlq.v1.orders")
	assert.Contains(t, out, "2 order(s), 2 position(s): consistent")
	out = ok(t, nil, "audit", "--bus", url, "--env", "dev", "--start", start, "--end", end, "--account", "ALPACA-LIVE-01", "--json")
	var r struct {
		Orders []struct {
			ClientOrderID string `json:"client_order_id"`
		} `json:"orders"`
		Consistent bool `json:"consistent"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.True(t, r.Consistent)
	require.Len(t, r.Orders, 1)
	assert.Equal(t, "co_demo_001", r.Orders[0].ClientOrderID)
}
