package natsbinding_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/positions"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/nats-io/nats.go"
)

// violations collects the server's permission violations.
type violations struct {
	mu    sync.Mutex
	lines []string
}

func (v *violations) logf(format string, args ...any) {
	line := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.Contains(line, "Permissions Violation") {
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.mu.Unlock()
	}
}

func (v *violations) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}

// A publisher and a group consumer holding only the rights the binding
// says their operations need publish and consume normally, on a stream an
// administrator provisioned; the server logs no permission violation.
func TestLeastPrivilegePublishAndConsume(t *testing.T) {
	d := positions.Domain
	prefix := d.Prefix("dev")
	var pub, cons natsbinding.Rights
	pub.Add(natsbinding.ClientRights("svc-pub"))
	pub.Add(natsbinding.PublishRights(prefix, d.Shapes()))
	cons.Add(natsbinding.ClientRights("svc-cons"))
	cons.Add(natsbinding.GroupRights(prefix, d.Partitions, "grp"))
	conf := natsbinding.AuthorizationConf([]natsbinding.User{
		{Name: "admin", Password: "admin-pw", All: true},
		{Name: "svc-pub", Password: "pub-pw", Rights: pub},
		{Name: "svc-cons", Password: "cons-pw", Rights: cons},
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.conf")
	require.NoError(t, os.WriteFile(file, []byte(conf), 0o600))
	var v violations
	srv, err := embedded.StartNATS(embedded.NATSOptions{ConfigFile: file, Logf: v.logf})
	require.NoError(t, err)
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(user, pw, producer string) *ampybus.Bus {
		opts := []ampybus.Option{ampybus.WithDialOptions(natsbinding.ClientOptions(nats.UserInfo(user, pw)))}
		if producer != "" {
			opts = append(opts, ampybus.WithProducer(producer, user))
		}
		b, err := ampybus.Open(ctx, srv.URL(), opts...)
		require.NoError(t, err, user)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	admin := open("admin", "admin-pw", "admin@1")
	require.NoError(t, admin.Ensure(ctx, d))

	consumer := open("svc-cons", "cons-pw", "svc-cons@1")
	got := make(chan string, 1)
	sub, err := positions.SubscribeSnapshots(ctx, consumer, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		got <- m.Payload.GetAccountId()
		return nil
	}, ampybus.Durable("grp"))
	require.NoError(t, err)
	defer sub.Stop()

	publisher := open("svc-pub", "pub-pw", "svc-pub@1")
	_, err = positions.NewSnapshotsPublisher(publisher).Publish(ctx, positions.NewSnapshotsSubtopic(), &positionsv1.PositionSnapshot{
		AccountId: "A-1", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, AsOf: timestamppb.Now()})
	require.NoError(t, err)
	select {
	case id := <-got:
		assert.Equal(t, "A-1", id)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing consumed")
	}
	require.NoError(t, sub.Stop())
	assert.Empty(t, v.list(), "permission violations")

	// What it was not granted fails at once, naming the subject and the right.
	require.NoError(t, admin.Ensure(ctx, bars.Domain))
	began := time.Now()
	_, err = bars.NewPublisher(publisher).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Start: timestamppb.Now(), End: timestamppb.Now(), EventTime: timestamppb.Now()}}})
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.Less(t, time.Since(began), time.Second)
	assert.ErrorContains(t, err, "the NATS user may not publish $JS.API.STREAM.INFO.AMPY_DEV_BARS_V1")
	began = time.Now()
	_, err = positions.SubscribeSnapshots(ctx, publisher, positions.AllSnapshots(), func(context.Context, *positions.SnapshotsMessage) error { return nil },
		ampybus.Durable("not-granted"))
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.Less(t, time.Since(began), time.Second)
	assert.ErrorContains(t, err, "$JS.API.CONSUMER.")
}

// An async publish the server refuses fails at once too, without the
// publish registering anything on the way out.
func TestRefusedAsyncPublishFailsAtOnce(t *testing.T) {
	d := positions.Domain
	var pub natsbinding.Rights
	pub.Add(natsbinding.ClientRights("svc-pub"))
	pub.Add(natsbinding.PublishRights(d.Prefix("dev"), []string{"not-a-subtopic"})) // stream info, but not its subjects
	conf := natsbinding.AuthorizationConf([]natsbinding.User{{Name: "admin", Password: "admin-pw", All: true}, {Name: "svc-pub", Password: "pub-pw", Rights: pub}})
	file := filepath.Join(t.TempDir(), "auth.conf")
	require.NoError(t, os.WriteFile(file, []byte(conf), 0o600))
	srv, err := embedded.StartNATS(embedded.NATSOptions{ConfigFile: file})
	require.NoError(t, err)
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin, err := ampybus.Open(ctx, srv.URL(), ampybus.WithDialOptions(natsbinding.ClientOptions(nats.UserInfo("admin", "admin-pw"))))
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.Ensure(ctx, d))
	b, err := ampybus.Open(ctx, srv.URL(), ampybus.WithProducer("svc-pub@1", "svc-pub"), ampybus.WithDialOptions(natsbinding.ClientOptions(nats.UserInfo("svc-pub", "pub-pw"))))
	require.NoError(t, err)
	defer b.Close()
	began := time.Now()
	var futures []*ampybus.PublishFuture
	for i := range 3 {
		f, err := positions.NewSnapshotsPublisher(b).PublishAsync(ctx, positions.NewSnapshotsSubtopic(), &positionsv1.PositionSnapshot{
			AccountId: fmt.Sprintf("A-%d", i), Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, AsOf: timestamppb.Now()})
		require.NoError(t, err)
		futures = append(futures, f)
	}
	for _, f := range futures {
		_, err := f.Wait(ctx)
		require.ErrorIs(t, err, ampybus.ErrForbidden)
		assert.ErrorContains(t, err, "ampy.dev.positions.v1.snapshots")
	}
	assert.Less(t, time.Since(began), time.Second)
}
