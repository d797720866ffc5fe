package busctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/secemit"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/spf13/pflag"
)

// aclCmd prints the broker permissions the contract's services: section
// grants, or (apply) creates the Kafka ACLs through the admin API.
func aclCmd(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	envName := e.envFlag(fs, "prod", "the environment whose permissions to print or apply")
	service := fs.String("service", "", "only this service")
	broker := fs.String("broker", "", "nats or kafka: print only one broker's (default both)")
	return func(ctx context.Context, args []string) error {
		apply := len(args) > 0
		if apply && args[0] != "apply" {
			return usagef("unexpected argument %q: acl takes apply, or nothing", args[0])
		}
		con, err := servicesContract()
		if err != nil {
			return err
		}
		if !slices.Contains(con.Envs, *envName) {
			return usagef("--env %q: the contract's envs are %v", *envName, con.Envs)
		}
		grants := secemit.Grants(con, *envName)
		if *service != "" {
			grants = slices.DeleteFunc(grants, func(g secemit.Grant) bool { return g.Service != *service })
			if len(grants) == 0 {
				var names []string
				for _, s := range con.Services {
					names = append(names, s.Name)
				}
				return usagef("--service %q is not in the contract's services: %s", *service, strings.Join(names, ", "))
			}
		}
		if apply {
			return applyACLs(ctx, c, *envName, grants)
		}
		if *broker == "" || *broker == "nats" {
			var users []natsbinding.User
			for _, g := range grants {
				users = append(users, natsbinding.User{Name: g.Service, Password: "$" + secemit.PasswordVar(con, *envName, g.Service), Rights: g.NATS})
			}
			fmt.Fprintf(e.stdout, "# NATS users, env %s (templates/security/nats/%s.conf has the full file)\n%s", *envName, *envName, natsbinding.AuthorizationConf(users))
		}
		if *broker == "" || *broker == "kafka" {
			fmt.Fprintf(e.stdout, "# Kafka ACLs, env %s\n", *envName)
			for _, g := range grants {
				for _, a := range g.Kafka {
					fmt.Fprintln(e.stdout, a)
				}
			}
		}
		if *broker != "" && *broker != "nats" && *broker != "kafka" {
			return usagef("--broker %q: want nats or kafka", *broker)
		}
		return nil
	}
}

func applyACLs(ctx context.Context, c *conn, envName string, grants []secemit.Grant) error {
	b, err := c.open(ctx, envName)
	if err != nil {
		return err
	}
	defer b.Close()
	t, ok := b.Transport().(*kafkabinding.Transport)
	if !ok {
		return errors.New("acl apply creates Kafka ACLs: give a kafka:// bus; NATS permissions live in the server's configuration (templates/security/nats)")
	}
	n := 0
	for _, g := range grants {
		if err := kafkabinding.ApplyACLs(ctx, t, g.Kafka); err != nil {
			return fmt.Errorf("%s: %w", g.Service, err)
		}
		n += len(g.Kafka)
	}
	fmt.Fprintf(c.e.stdout, "applied %d ACLs for %d service(s) in env %s\n", n, len(grants), envName)
	return nil
}

// servicesContract is the contract with its services: the one --contract
// loaded, else contract.yaml in the working directory read against the
// payload schemas built in.
func servicesContract() (*contract.Contract, error) {
	if loaded != nil {
		return loaded, nil
	}
	if _, err := os.Stat("contract.yaml"); err != nil {
		return nil, usagef("acl reads the services of a contract: run it beside contract.yaml or pass --contract FILE")
	}
	return contract.Load("contract.yaml", protoregistry.GlobalFiles)
}
