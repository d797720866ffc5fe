package secemit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/gen/secemit"
	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/generated/fills"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/internal/testpki"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

var templateVar = regexp.MustCompile(`\{([^}]+)\}`)

// sample is a concrete subtopic of a route and a payload for it: each
// parameter is its name in capitals, other key fields K1, K2, ….
func sample(r *ampybus.AnyRoute) (string, func() (proto.Message, error)) {
	params := map[string]string{}
	sub := templateVar.ReplaceAllStringFunc(r.Spec.Pattern, func(m string) string {
		v := strings.ToUpper(m[1 : len(m)-1])
		params[m[1:len(m)-1]] = v
		return v
	})
	n := 0
	md := r.NewPayload().ProtoReflect().Descriptor()
	pk := templateVar.ReplaceAllStringFunc(r.Spec.PartitionKey, func(m string) string {
		name := strings.TrimSuffix(m[1:len(m)-1], "?")
		if v, ok := params[name]; ok {
			return v
		}
		for p, paths := range r.Spec.Bind {
			if slices.Contains(paths, name) {
				return params[p]
			}
		}
		if timeField(md, name) {
			return "2025-06-30T00:00:00Z"
		}
		n++
		return "K" + strconv.Itoa(n)
	})
	return sub, func() (proto.Message, error) { return r.Skeleton(sub, pk) }
}

// timeField reports a dotted path that ends at a google.protobuf.Timestamp.
func timeField(md protoreflect.MessageDescriptor, path string) bool {
	var fd protoreflect.FieldDescriptor
	for _, name := range strings.Split(path, ".") {
		if md == nil {
			return false
		}
		if fd = md.Fields().ByName(protoreflect.Name(name)); fd == nil {
			return false
		}
		md = fd.Message()
	}
	return md != nil && md.FullName() == "google.protobuf.Timestamp"
}

func shapeOf(pattern string) string { return templateVar.ReplaceAllString(pattern, "*") }

// Every service of the shipped contract, connected as its generated NATS
// user, can publish exactly the subtopics it is granted and consume exactly
// those it is granted with its group; everything else is refused at once
// with ErrForbidden.
func TestEachServiceCanDoExactlyWhatTheContractGrants(t *testing.T) {
	if testing.Short() {
		t.Skip("a server and every service's bus")
	}
	c, open := natsFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type grant struct{ domain, subtopic string }
	checked := 0
	for _, s := range c.Services {
		t.Run(s.Name, func(t *testing.T) {
			b := open(s.Name)
			publishes, groups := map[grant]bool{}, map[grant]string{}
			for _, r := range s.Publishes {
				publishes[grant{r.Domain.Name, r.Subtopic.Pattern.Text}] = true
			}
			for _, r := range s.Consumes {
				groups[grant{r.Domain.Name, r.Subtopic.Pattern.Text}] = r.Group
			}
			for _, d := range generated.Catalog.Domains() {
				for _, r := range generated.Catalog.Routes(d) {
					g := grant{d.Name, r.Spec.Pattern}
					sub, payload := sample(r)
					msg, err := payload()
					require.NoError(t, err, "%s %s", d.Name, sub)
					began := time.Now()
					_, err = r.Publish(ctx, b, sub, msg)
					checkRight(t, fmt.Sprintf("%s publishes %s.%s", s.Name, d.Name, sub), publishes[g] || s.Redrive, err, began)

					group := groups[g]
					if group == "" {
						group = "matrix-" + s.Name + "-" + shapeOf(r.Spec.Pattern)
						group = strings.NewReplacer("*", "x", ".", "-").Replace(group)
					}
					began = time.Now()
					subn, err := r.Subscribe(ctx, b, shapeOf(r.Spec.Pattern), func(context.Context, *ampybus.AnyMessage) error { return nil }, ampybus.Durable(group))
					checkRight(t, fmt.Sprintf("%s consumes %s.%s as %s", s.Name, d.Name, r.Spec.Pattern, group), groups[g] != "" || s.Admin, err, began)
					if err == nil {
						require.NoError(t, subn.Stop())
					}
					checked += 2
				}
			}
		})
	}
	t.Logf("%d rights checked for %d services", checked, len(c.Services))
}

func checkRight(t *testing.T, what string, granted bool, err error, began time.Time) {
	t.Helper()
	switch {
	case granted:
		assert.NoError(t, err, what)
	case err == nil:
		t.Errorf("%s: allowed, but the contract does not grant it", what)
	default:
		assert.True(t, errors.Is(err, ampybus.ErrForbidden), "%s: %v", what, err)
		assert.Less(t, time.Since(began), time.Second, "%s is refused at once", what)
	}
}

// The same on Kafka: TLS, SASL SCRAM users, authorization on, the
// generated ACLs applied by a superuser; each service can publish exactly the
// domains it is granted (a topic is a domain version: ACLs go no finer)
// and consume exactly what it is granted, with its groups.
func TestEachServiceCanDoExactlyWhatTheContractGrantsOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster and every service's bus")
	}
	c := shipped(t)
	const env, mech = "dev", "SCRAM-SHA-256"
	var users []embedded.SASLUser
	for _, s := range c.Services {
		users = append(users, embedded.SASLUser{Mechanism: mech, User: s.Name, Password: "pw-" + s.Name})
	}
	p := testpki.New(t)
	srvCert, srvKey := p.Server("kafka")
	k, err := embedded.StartKafka(embedded.KafkaOptions{ACLs: true, Users: users, TLS: p.ServerTLS(srvCert, srvKey, false),
		Superusers: []embedded.SASLUser{{Mechanism: mech, User: "root", Password: "root-pw"}}})
	require.NoError(t, err)
	defer k.Shutdown()
	tlsCfg, err := certfiles.ClientConfig(certfiles.Options{CAFile: p.CAFile()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	open := func(user string, opts ...ampybus.Option) *ampybus.Bus {
		pw := "pw-" + user
		if user == "root" {
			pw = "root-pw"
		}
		opts = append(opts, ampybus.WithEnv(env), ampybus.WithProducer(user+"@matrix", user),
			ampybus.WithDialOptions(kafkabinding.ClientOptions(kgo.DialTLSConfig(tlsCfg), kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()))))
		b, err := ampybus.Open(ctx, k.URL(), opts...)
		require.NoError(t, err, user)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	root := open("root")
	for _, g := range secemit.Grants(c, env) {
		require.NoError(t, kafkabinding.ApplyACLs(ctx, root.Transport().(*kafkabinding.Transport), g.Kafka), g.Service)
	}
	// ops provisions with its own ACLs.
	require.NoError(t, open("ops", ampybus.WithProvisioning()).Ensure(ctx, generated.Catalog.Domains()...))

	type grant struct{ domain, subtopic string }
	for _, s := range c.Services {
		t.Run(s.Name, func(t *testing.T) {
			b := open(s.Name)
			// A Kafka topic holds a domain version's subtopics, and an ACL
			// names a topic: publishing one subtopic grants the domain's.
			// Admin ACLs provision; they read nothing.
			publishes := map[string]bool{}
			for _, r := range s.Publishes {
				publishes[r.Domain.Name] = true
			}
			groups := map[grant]string{}
			for _, r := range s.Consumes {
				groups[grant{r.Domain.Name, r.Subtopic.Pattern.Text}] = r.Group
			}
			for _, d := range generated.Catalog.Domains() {
				for _, r := range generated.Catalog.Routes(d) {
					sub, payload := sample(r)
					msg, err := payload()
					require.NoError(t, err)
					began := time.Now()
					_, err = r.Publish(ctx, b, sub, msg)
					checkRight(t, fmt.Sprintf("%s publishes %s.%s", s.Name, d.Name, sub), publishes[d.Name] || s.Redrive, err, began)

					// Reading takes Read on the topic and on the group.
					group := groups[grant{d.Name, r.Spec.Pattern}]
					granted := group != ""
					if !granted {
						group = strings.NewReplacer("*", "x", ".", "-").Replace("matrix-" + s.Name + "-" + shapeOf(r.Spec.Pattern))
					}
					began = time.Now()
					subn, err := r.Subscribe(ctx, b, shapeOf(r.Spec.Pattern), func(context.Context, *ampybus.AnyMessage) error { return nil }, ampybus.Durable(group))
					checkRight(t, fmt.Sprintf("%s consumes %s.%s as %s", s.Name, d.Name, r.Spec.Pattern, group), granted, err, began)
					if err == nil {
						require.NoError(t, subn.Stop())
					}
				}
			}
		})
	}
}

// natsFixture starts nats-server over TLS with the generated users of env
// dev and has ops provision every stream; open connects as a service.
func natsFixture(t *testing.T) (*contract.Contract, func(service string, opts ...ampybus.Option) *ampybus.Bus) {
	t.Helper()
	c := shipped(t)
	const env = "dev"
	files, err := secemit.Emitter{Source: "contract.yaml"}.Emit(c)
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = output.Write(dir, files)
	require.NoError(t, err)
	for _, s := range c.Services {
		t.Setenv(secemit.PasswordVar(c, env, s.Name), "pw-"+s.Name)
	}
	// The server speaks TLS and includes the generated users, as a
	// deployment's nats-server.conf would.
	p := testpki.New(t)
	srvCert, srvKey := p.Server("nats")
	conf := filepath.Join(dir, "server.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n}\ninclude %q\n",
		srvCert, srvKey, filepath.Join("nats", env+".conf"))), 0o600))
	srv, err := embedded.StartNATS(embedded.NATSOptions{ConfigFile: conf})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	tlsCfg, err := certfiles.ClientConfig(certfiles.Options{CAFile: p.CAFile()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	url := srv.URL() // tls://, as the server speaks TLS
	open := func(service string, opts ...ampybus.Option) *ampybus.Bus {
		opts = append(opts, ampybus.WithEnv(env), ampybus.WithProducer(service+"@matrix", service),
			ampybus.WithDialOptions(natsbinding.ClientOptions(nats.UserInfo(service, "pw-"+service), nats.Secure(tlsCfg))))
		b, err := ampybus.Open(ctx, url, opts...)
		require.NoError(t, err, service)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	// ops holds the admin right: it provisions every stream.
	require.NoError(t, open("ops", ampybus.WithProvisioning()).Ensure(ctx, generated.Catalog.Domains()...))
	return c, open
}

// The rights beyond publishing and consuming, each under the identity that
// holds it: a consumer dead-letters into its domain's queue, a service with
// the replay right replays its domain and one without is refused, and ops
// redrives a dead letter that a consumer of the queue may not.
func TestDeadLetterReplayAndRedriveRights(t *testing.T) {
	if testing.Short() {
		t.Skip("a server and several services' buses")
	}
	_, open := natsFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now().Add(-time.Second)
	broker := open("broker-alpaca")
	sub, err := orders.SubscribeRequests(ctx, broker, orders.AllRequests(), func(context.Context, *orders.RequestsMessage) error {
		return ampybus.Permanent(errors.New("unknown account"))
	}, ampybus.Durable("broker-alpaca"))
	require.NoError(t, err)
	ops := open("ops")
	_, err = orders.NewRequestsPublisher(ops).Publish(ctx, orders.NewRequestsSubtopic(), &ordersv1.OrderRequest{
		AccountId: "A-9", ClientOrderId: "co_rights", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, CreatedAt: timestamppb.Now()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().DeadLettered == 1 }, 20*time.Second, 10*time.Millisecond,
		"broker-alpaca dead-letters with its own right: %v", sub.Err())
	require.NoError(t, sub.Stop())

	// Replay: position-pnl may replay fills; broker-alpaca may not replay orders.
	_, err = fills.ReplayEventsWindow(ctx, open("ampy-position-pnl"), fills.AllEvents(), ampybus.ReplayWindow{Start: start},
		func(context.Context, *fills.EventsMessage) error { return nil })
	require.NoError(t, err)
	began := time.Now()
	_, err = orders.ReplayRequestsWindow(ctx, broker, orders.AllRequests(), ampybus.ReplayWindow{Start: start},
		func(context.Context, *orders.RequestsMessage) error { return nil })
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.Less(t, time.Since(began), time.Second)

	// Redrive: ops reads the queue as ampybusctl-redrive and puts the
	// order back; monitoring reads the queue but may not put it back.
	for _, who := range []string{"monitoring", "ops"} {
		group := map[string]string{"monitoring": "monitoring", "ops": "ampybusctl-redrive"}[who]
		b := open(who)
		tap, err := ampybus.OpenTap(ctx, b, generated.Catalog, "ampy.dev.dlq.v1.orders",
			ampybus.TapOptions{Group: group, Start: transport.StartPosition{Kind: transport.StartFirst}, Bounded: true})
		require.NoError(t, err, who)
		in, err := tap.Next(ctx)
		require.NoError(t, err, who)
		_, err = ampybus.Redrive(ctx, b, generated.Catalog, in)
		if who == "ops" {
			require.NoError(t, err)
			require.NoError(t, in.Ack(ctx))
		} else {
			require.ErrorIs(t, err, ampybus.ErrForbidden, "monitoring reads dead letters, it does not redrive them")
		}
		require.NoError(t, tap.Close())
	}
}
