package secemit

import (
	"fmt"
	"strings"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
)

// Emitter writes nats/<env>.conf and kafka/<env>.acl for every env.
type Emitter struct {
	// Source names the contract in the generated files' headers.
	Source string
}

// Name implements output.Emitter.
func (Emitter) Name() string { return "security" }

// Emit implements output.Emitter.
func (e Emitter) Emit(c *contract.Contract) (map[string][]byte, error) {
	if len(c.Services) == 0 {
		return nil, fmt.Errorf("%s: the contract lists no services: add a services: section naming who publishes and consumes what", c.File)
	}
	files := map[string][]byte{}
	for _, env := range c.Envs {
		var users []string
		for _, s := range c.Services {
			users = append(users, "#   "+PasswordVar(c, env, s.Name))
		}
		files["nats/"+env+".conf"] = []byte("# " + output.Marker + " Source: " + e.Source + "\n" +
			"# Least-privilege NATS users of env " + env + ", one per service of the contract: include\n" +
			"# this file from nats-server.conf. Each password is read from the environment:\n" +
			strings.Join(users, "\n") + "\n" + NATSConf(c, env))
		files["kafka/"+env+".acl"] = []byte("# " + output.Marker + " Source: " + e.Source + "\n" +
			"# Kafka ACLs of env " + env + ", one principal per service of the contract;\n" +
			"# ampybusctl acl apply --env " + env + " creates them.\n" + KafkaACLs(c, env))
	}
	return files, nil
}
