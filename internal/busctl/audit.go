package busctl

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/ampyfin/ampy-bus/internal/audit"
	"github.com/spf13/pflag"
)

// errInconsistent makes audit exit 1 after its report.
var errInconsistent = errors.New("the session is not consistent: see the problems in the report")

// auditCmd reconstructs a trading session from the bus: signals, orders,
// fills and positions in causal order per client_order_id, with hashes,
// and whether the positions agree with the fills.
func auditCmd(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	envName := e.envFlag(fs, "prod", "the environment of the session")
	start := fs.String("start", "", "the session's start, RFC 3339")
	end := fs.String("end", "", "the session's end (exclusive), RFC 3339")
	account := fs.String("account", "", "only this account")
	asJSON := fs.Bool("json", false, "the report as one JSON object")
	return func(ctx context.Context, args []string) error {
		if foreign {
			return usagef("audit reads this repository's trading domains (signals, orders, fills, positions); --contract serves another")
		}
		from, err := time.Parse(time.RFC3339Nano, *start)
		if err != nil {
			return usagef("--start %q: give an RFC 3339 time such as 2025-01-01T14:30:00Z", *start)
		}
		until, err := time.Parse(time.RFC3339Nano, *end)
		if err != nil {
			return usagef("--end %q: give an RFC 3339 time such as 2025-01-01T21:00:00Z", *end)
		}
		b, err := c.open(ctx, *envName)
		if err != nil {
			return err
		}
		defer b.Close()
		r, err := audit.Run(ctx, b, catalog, audit.Options{Env: *envName, Start: from, End: until, Account: *account})
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(r); err != nil {
				return err
			}
		} else {
			r.WriteText(e.stdout)
		}
		if !r.Consistent {
			return errInconsistent
		}
		return nil
	}
}
