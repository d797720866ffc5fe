package secemit_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/gen/secemit"
	_ "github.com/ampyfin/ampy-bus/generated" // links the payload schemas
)

func shipped(t *testing.T) *contract.Contract {
	t.Helper()
	c, err := contract.Load("../../contract.yaml", protoregistry.GlobalFiles)
	require.NoError(t, err)
	return c
}

// Every env's users file is a configuration nats-server accepts, with each
// service a user whose password comes from its variable, and the committed
// templates are current.
func TestNATSUsersLoadIntoTheServer(t *testing.T) {
	c := shipped(t)
	files, err := secemit.Emitter{Source: "contract.yaml"}.Emit(c)
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = output.Write(dir, files)
	require.NoError(t, err)
	for _, env := range c.Envs {
		for _, s := range c.Services {
			t.Setenv(strings.ToUpper(strings.NewReplacer("-", "_").Replace("ampy_"+env+"_"+s.Name))+"_PASSWORD", "pw-"+s.Name)
		}
		opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats", env+".conf"))
		require.NoError(t, err, env)
		require.Len(t, opts.Users, len(c.Services))
		for _, u := range opts.Users {
			assert.Equal(t, "pw-"+u.Username, u.Password, "%s reads its password from the environment", u.Username)
			require.NotNil(t, u.Permissions)
			assert.Contains(t, u.Permissions.Subscribe.Allow, "_INBOX_"+u.Username+".>", "each service reads only its own inbox")
		}
	}
	diff, err := output.Check("../../templates/security", files)
	require.NoError(t, err)
	assert.Empty(t, diff, "templates/security is stale: make generate")
}

// What each right grants, for the shipped services.
func TestGrantsFollowTheContract(t *testing.T) {
	c := shipped(t)
	grants := map[string]secemit.Grant{}
	for _, g := range secemit.Grants(c, "prod") {
		grants[g.Service] = g
	}
	oms := grants["ampy-oms"]
	assert.Contains(t, oms.NATS.Publish, "*.ampy.prod.orders.v1.requests")
	// A group member moves its partition consumers' deliver subjects (an
	// update is a create request) and acknowledges what they push.
	assert.Contains(t, oms.NATS.Publish, "$JS.API.CONSUMER.CREATE.AMPY_PROD_FILLS_V1.ampy-oms-part0")
	assert.Contains(t, oms.NATS.Publish, "$JS.ACK.AMPY_PROD_FILLS_V1.ampy-oms-part0.>")
	assert.Contains(t, oms.NATS.Publish, "*.ampy.prod.dlq.v1.fills", "a consumer dead-letters into its domain's queue")
	assert.NotContains(t, oms.NATS.Publish, "*.ampy.prod.fills.v1.events", "the OMS consumes fills, it does not publish them")
	assert.NotContains(t, oms.NATS.Publish, "$JS.API.>")
	assert.Contains(t, oms.Kafka[0].Principal, "User:ampy-oms")
	var kafka []string
	for _, a := range oms.Kafka {
		kafka = append(kafka, a.String())
	}
	assert.Contains(t, kafka, "User:ampy-oms allow write on topic ampy.prod.orders.v1 (literal)")
	assert.Contains(t, kafka, "User:ampy-oms allow read on group ampy-oms (literal)")
	assert.NotContains(t, kafka, "User:ampy-oms allow write on topic ampy.prod.fills.v1 (literal)")

	ops := grants["ops"]
	assert.Contains(t, ops.NATS.Publish, "$JS.API.>", "admin provisions")
	assert.Contains(t, ops.NATS.Publish, "*.ampy.prod.fills.v1.events", "redrive puts dead letters back on any topic")

	broker := grants["broker-alpaca"]
	assert.NotContains(t, broker.NATS.Publish, "$JS.API.CONSUMER.CREATE.AMPY_PROD_ORDERS_V1.*", "no replay right, no consumers of its own")
	assert.Contains(t, grants["ampy-position-pnl"].NATS.Publish, "$JS.API.CONSUMER.CREATE.AMPY_PROD_FILLS_V1.*", "the replay right")

	_, err := secemit.Emitter{}.Emit(&contract.Contract{File: "c.yaml"})
	assert.ErrorContains(t, err, "c.yaml: the contract lists no services")
}
