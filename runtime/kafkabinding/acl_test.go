package kafkabinding_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/positions"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
)

// On a cluster with SASL SCRAM and ACLs, a producer and a group consumer
// holding only the ACLs the binding says they need publish and consume; a
// topic they were not granted fails at once with ErrForbidden, and a wrong
// password says which settings to check.
func TestLeastPrivilegeACLs(t *testing.T) {
	const mech = "SCRAM-SHA-256"
	k, err := embedded.StartKafka(embedded.KafkaOptions{ACLs: true,
		Superusers: []embedded.SASLUser{{Mechanism: mech, User: "admin", Password: "admin-pw"}},
		Users:      []embedded.SASLUser{{Mechanism: mech, User: "svc-pub", Password: "pub-pw"}, {Mechanism: mech, User: "svc-cons", Password: "cons-pw"}},
	})
	require.NoError(t, err)
	defer k.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func(user, pw string, opts ...ampybus.Option) (*ampybus.Bus, error) {
		auth := scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()
		opts = append(opts, ampybus.WithDialOptions(kafkabinding.ClientOptions(kgo.SASL(auth))), ampybus.WithProducer(user+"@1", user))
		b, err := ampybus.Open(ctx, k.URL(), opts...)
		if err == nil {
			t.Cleanup(func() { _ = b.Close() })
		}
		return b, err
	}
	admin, err := open("admin", "admin-pw", ampybus.WithProvisioning())
	require.NoError(t, err)
	require.NoError(t, admin.Ensure(ctx, positions.Domain, bars.Domain, ampybus.DeadLetterDomain(positions.Domain)))
	topic := positions.Domain.Prefix("dev")
	rules := kafkabinding.ProduceACLs(kafkabinding.Principal("svc-pub"), topic)
	rules = append(rules, kafkabinding.ConsumeACLs(kafkabinding.Principal("svc-cons"), topic, "grp")...)
	require.NoError(t, kafkabinding.ApplyACLs(ctx, admin.Transport().(*kafkabinding.Transport), rules))

	cons, err := open("svc-cons", "cons-pw")
	require.NoError(t, err)
	got := make(chan string, 1)
	sub, err := positions.SubscribeSnapshots(ctx, cons, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		got <- m.Payload.GetAccountId()
		return nil
	}, ampybus.Durable("grp"))
	require.NoError(t, err)
	defer sub.Stop()
	pub, err := open("svc-pub", "pub-pw")
	require.NoError(t, err)
	_, err = positions.NewSnapshotsPublisher(pub).Publish(ctx, positions.NewSnapshotsSubtopic(), &positionsv1.PositionSnapshot{
		AccountId: "A-1", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, AsOf: timestamppb.Now()})
	require.NoError(t, err)
	select {
	case id := <-got:
		assert.Equal(t, "A-1", id)
	case <-time.After(20 * time.Second):
		t.Fatal("nothing consumed")
	}

	began := time.Now()
	now := timestamppb.Now()
	_, err = bars.NewPublisher(pub).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Start: now, End: now, EventTime: now}}})
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.Less(t, time.Since(began), time.Second)
	assert.ErrorContains(t, err, "ampybusctl acl apply")
	assert.ErrorContains(t, err, "it needs Describe on topic ampy.dev.bars.v1")

	// kfake hangs up on bad credentials where Kafka answers
	// SASL_AUTHENTICATION_FAILED (which wraps ErrForbidden): either way the
	// error names the SASL settings to check.
	_, err = open("svc-pub", "wrong")
	require.Error(t, err)
	assert.ErrorContains(t, err, "check --sasl-* and --tls")
}
