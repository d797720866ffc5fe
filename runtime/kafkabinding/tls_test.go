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

	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/internal/testpki"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
)

// Kafka over mutual TLS with SASL SCRAM on top: a client with the CA and
// its certificate publishes and consumes; without its certificate, or
// without the CA, it cannot connect, and the error says which to pass.
func TestKafkaOverMutualTLSWithSCRAM(t *testing.T) {
	p := testpki.New(t)
	srvCert, srvKey := p.Server("kafka")
	cliCert, cliKey := p.Client("svc", "svc@ampy")
	const mech = "SCRAM-SHA-512"
	k, err := embedded.StartKafka(embedded.KafkaOptions{TLS: p.ServerTLS(srvCert, srvKey, true),
		Superusers: []embedded.SASLUser{{Mechanism: mech, User: "svc", Password: "svc-pw"}}})
	require.NoError(t, err)
	defer k.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(o certfiles.Options) (*ampybus.Bus, error) {
		cfg, err := certfiles.ClientConfig(o)
		require.NoError(t, err)
		return ampybus.Open(ctx, k.URL(), ampybus.WithProducer("svc@1", "svc"), ampybus.WithProvisioning(),
			ampybus.WithDialOptions(kafkabinding.ClientOptions(kgo.DialTLSConfig(cfg), kgo.SASL(scram.Auth{User: "svc", Pass: "svc-pw"}.AsSha512Mechanism()))))
	}
	b, err := open(certfiles.Options{CAFile: p.CAFile(), CertFile: cliCert, KeyFile: cliKey})
	require.NoError(t, err)
	defer b.Close()
	got := make(chan string, 1)
	sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		got <- m.Payload.GetAccountId()
		return nil
	}, ampybus.Durable("tls"))
	require.NoError(t, err)
	defer sub.Stop()
	_, err = positions.NewSnapshotsPublisher(b).Publish(ctx, positions.NewSnapshotsSubtopic(), &positionsv1.PositionSnapshot{
		AccountId: "TLS-1", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, AsOf: timestamppb.Now()})
	require.NoError(t, err)
	select {
	case id := <-got:
		assert.Equal(t, "TLS-1", id)
	case <-ctx.Done():
		t.Fatal("nothing consumed over TLS")
	}

	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	for _, tc := range []struct {
		name string
		o    certfiles.Options
		fix  string
	}{
		{"no client certificate", certfiles.Options{CAFile: p.CAFile()}, "needs a client certificate its CA signed (--tls-cert, --tls-key)"},
		{"no CA", certfiles.Options{CertFile: cliCert, KeyFile: cliKey}, "pass the CA that signed it (--tls-ca)"},
	} {
		cfg, err := certfiles.ClientConfig(tc.o)
		require.NoError(t, err)
		_, err = ampybus.Open(short, k.URL(), ampybus.WithDialOptions(kafkabinding.ClientOptions(kgo.DialTLSConfig(cfg))))
		require.ErrorIs(t, err, ampybus.ErrForbidden, tc.name)
		assert.ErrorContains(t, err, tc.fix, tc.name)
	}
}
