package busctl

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// contextCmd is `ampybusctl context`: buses saved under names, as
// `nats context` does, so an operator types --context prod instead of a URL,
// credentials and TLS files.
func (e *env) contextCmd() *cobra.Command {
	parent := &cobra.Command{
		Use:   "context",
		Short: "save buses under names (add, ls, use, show, rm) and select one, as nats context does",
		Long: `A context is a saved bus: its URL, credentials, TLS files, the env commands
default to and the contract. --context NAME or $AMPYBUS_CONTEXT picks one for a
command; ampybusctl context use NAME picks one for every command after it. Flags
on the command line, then environment variables, win over the context's values.

Contexts live in the user's config directory ($XDG_CONFIG_HOME/ampybus/contexts.json
on Linux) with mode 0600; passwords and tokens in it are never printed.`,
		// Managing contexts must work while the selected one is broken.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		Args:              cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q: context takes add, ls, use, show or rm", args[0])
			}
			_ = cmd.Help()
			return errNoCommand
		},
	}
	parent.AddCommand(e.contextAdd(), e.contextLs(), e.contextUse(), e.contextShow(), e.contextRm())
	return parent
}

// oneName takes a context name as the only argument.
func oneName(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("give one context name")
	}
	if !contextName.MatchString(args[0]) {
		return usagef("context name %q: use letters, digits, '.', '_' and '-' (at most 64)", args[0])
	}
	return nil
}

func (e *env) store() (*contextStore, error) {
	return openContexts(e.getenv, func(w string) { fmt.Fprintln(e.stderr, w) })
}

// changeContexts applies change to the contexts file under its lock and
// saves it, unless change refuses; the store as saved is returned.
func (e *env) changeContexts(change func(*contextStore) error) (*contextStore, error) {
	unlock, err := lockContexts(e.getenv)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s, err := e.store()
	if err != nil {
		return nil, err
	}
	if err := change(s); err != nil {
		return nil, err
	}
	return s, s.save()
}

func (e *env) contextAdd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add NAME --bus URL [--env E] [--creds F | --user U --pass P | --token T | --sasl-…] [--tls-ca F] [--tls-cert F --tls-key F] [--contract F]",
		Short: "save a bus under NAME, from the global flags given with it",
		Args:  oneName,
	}
	envName := cmd.Flags().String("env", "", "the env commands default to with this context")
	desc := cmd.Flags().String("description", "", "what this bus is, shown by context ls")
	use := cmd.Flags().Bool("use", false, "select it for the commands that follow (the first context saved is selected anyway)")
	force := cmd.Flags().Bool("force", false, "replace a saved context of the same name")
	cmd.ValidArgsFunction = cobra.NoFileCompletions
	_ = cmd.RegisterFlagCompletionFunc("env", e.completeEnvs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, fs, c := args[0], cmd.Flags(), e.global
		// Secrets may come from the environment, to keep them out of argv.
		for _, s := range c.credentials() {
			if v := e.getenv(s.envVar); v != "" && !fs.Changed(s.flag) {
				*s.dst = v
			}
		}
		if !fs.Changed("bus") && !fs.Changed("nats") && !fs.Changed("brokers") {
			return usagef("give the bus the context saves: --bus nats://host:4222 or --bus kafka://host:9092")
		}
		bus, err := c.url()
		if err != nil {
			return err
		}
		scheme, _, _ := strings.Cut(bus, "://")
		if !slices.Contains([]string{"nats", "tls", "ws", "wss", "kafka"}, scheme) {
			return usagef("--bus %s: a context saves a broker other commands reach (nats://, tls:// or kafka://); for local brokers run ampybusctl dev and save its URL", redactURL(bus))
		}
		x := &Context{
			Description: *desc, Bus: bus, Env: *envName,
			User: c.user, Password: c.pass, Token: c.token,
			TLS: c.kafkaTLS, TLSInsecure: c.tlsInsecure,
			SASLMechanism: c.saslMechanism, SASLUser: c.saslUser, SASLPassword: c.saslPw,
		}
		files := []struct {
			flag string
			src  string
			dst  *string
		}{
			{"creds", c.creds, &x.Creds}, {"nkey-seed", c.nkey, &x.NkeySeed},
			{"tls-ca", c.tlsCA, &x.TLSCA}, {"tls-cert", c.tlsCert, &x.TLSCert}, {"tls-key", c.tlsKey, &x.TLSKey},
			{"contract", e.contracts.path, &x.Contract},
		}
		for _, f := range files {
			if f.src == "" {
				continue
			}
			if *f.dst, err = absFile(f.flag, f.src); err != nil {
				return err
			}
		}
		for _, p := range e.contracts.protoPaths {
			a, err := absFile("proto_path", p)
			if err != nil {
				return err
			}
			x.ProtoPaths = append(x.ProtoPaths, a)
		}
		for _, p := range e.contracts.descriptorSets {
			a, err := absFile("descriptor_set_in", p)
			if err != nil {
				return err
			}
			x.DescriptorSets = append(x.DescriptorSets, a)
		}
		if (x.TLSCert == "") != (x.TLSKey == "") {
			return usagef("--tls-cert and --tls-key go together")
		}
		if x.Env != "" {
			if err := e.contracts.load(cmd.Context()); err != nil {
				return err
			}
			if envs := catalog.Domains()[0].Envs; !slices.Contains(envs, x.Env) {
				return usagef("--env %s is not one of the contract's envs (%s)", x.Env, strings.Join(envs, ", "))
			}
		}
		s, err := e.changeContexts(func(s *contextStore) error {
			if _, ok := s.Contexts[name]; ok && !*force {
				return usagef("context %q is saved already: pass --force to replace it, or remove it with ampybusctl context rm %s", name, name)
			}
			s.Contexts[name] = x
			if *use || len(s.Contexts) == 1 {
				s.Current = name
			}
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "saved context %s: %s, auth %s, in %s\n", name, redactURL(x.Bus), x.auth(), s.path)
		if s.Current == name {
			fmt.Fprintf(e.stdout, "using context %s\n", name)
		}
		return nil
	}
	return cmd
}

// absFile makes a file a context names absolute, so the context works from
// any directory, and checks it is there.
func absFile(flag, path string) (string, error) {
	a, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	if _, err := os.Stat(a); err != nil {
		return "", usagef("--%s %s: %v", flag, path, err)
	}
	return a, nil
}

func (e *env) contextLs() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "ls",
		Aliases:           []string{"list"},
		Short:             "list the saved contexts; * marks the one in use",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cmd.RunE = func(*cobra.Command, []string) error {
		s, err := e.store()
		if err != nil {
			return err
		}
		if len(s.Contexts) == 0 {
			fmt.Fprintf(e.stderr, "no contexts saved in %s; add one with ampybusctl context add NAME --bus URL\n", s.path)
			return nil
		}
		current := firstOf(nil, e.contextName, e.getenv("AMPYBUS_CONTEXT"), s.Current)
		if current != "" && current == s.Current && e.contextName == "" && e.getenv("AMPYBUS_CONTEXT") == "" && busInEnv(e.getenv) {
			fmt.Fprintf(e.stderr, "note: %s is selected but not in use while %s names the bus\n", current, envBusVar(e.getenv))
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tNAME\tBUS\tENV\tAUTH\tDESCRIPTION")
		for _, n := range s.names() {
			x := s.Contexts[n]
			mark := ""
			if n == current {
				mark = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, n, redactURL(x.Bus), dash(x.Env), x.auth(), dash(x.Description))
		}
		return tw.Flush()
	}
	return cmd
}

// dash stands for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (e *env) contextUse() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "use NAME | --none",
		Short: "select a context for the commands that follow",
		Args:  atMost(1),
	}
	none := cmd.Flags().Bool("none", false, "select no context: commands use their flags and environment only")
	cmd.ValidArgsFunction = e.completeContexts
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case *none && len(args) == 0:
			if _, err := e.changeContexts(func(s *contextStore) error { s.Current = ""; return nil }); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "using no context")
			return nil
		case *none || len(args) == 0:
			return usagef("give a context name, or --none")
		}
		if err := oneName(cmd, args); err != nil {
			return err
		}
		var x *Context
		_, err := e.changeContexts(func(s *contextStore) error {
			var err error
			if x, err = s.get(args[0]); err != nil {
				return usagef("%v", err)
			}
			s.Current = args[0]
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "using context %s: %s\n", args[0], redactURL(x.Bus))
		if busInEnv(e.getenv) {
			fmt.Fprintf(e.stderr, "note: %s names the bus in this shell, and wins over the selected context: unset it to use %s\n", envBusVar(e.getenv), args[0])
		}
		return nil
	}
	return cmd
}

func (e *env) contextShow() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show [NAME]",
		Short: "show a context (the one in use by default); secrets show as (hidden)",
		Args:  atMost(1),
	}
	cmd.ValidArgsFunction = e.completeContexts
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		s, err := e.store()
		if err != nil {
			return err
		}
		name := firstOf(args, e.contextName, e.getenv("AMPYBUS_CONTEXT"), s.Current)
		if name == "" {
			return usagef("no context is in use: name one, or select one with ampybusctl context use NAME")
		}
		x, err := s.get(name)
		if err != nil {
			return usagef("%v", err)
		}
		secret := func(v string) string {
			if v == "" {
				return ""
			}
			return "(hidden)"
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		rows := [][2]string{
			{"name", name}, {"description", x.Description}, {"bus", redactURL(x.Bus)}, {"env", x.Env},
			{"user", x.User}, {"password", secret(x.Password)}, {"token", secret(x.Token)},
			{"creds", x.Creds}, {"nkey seed", x.NkeySeed},
			{"tls ca", x.TLSCA}, {"tls cert", x.TLSCert}, {"tls key", x.TLSKey},
			{"tls", yes(x.TLS)}, {"tls insecure", yes(x.TLSInsecure)},
			{"sasl mechanism", x.SASLMechanism}, {"sasl user", x.SASLUser}, {"sasl password", secret(x.SASLPassword)},
			{"contract", x.Contract}, {"proto paths", strings.Join(x.ProtoPaths, ", ")}, {"descriptor sets", strings.Join(x.DescriptorSets, ", ")},
		}
		for _, r := range rows {
			if r[1] != "" {
				fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
			}
		}
		fmt.Fprintf(tw, "file:\t%s\n", s.path)
		return tw.Flush()
	}
	return cmd
}

// firstOf returns the first non-empty of a command's argument and the names given.
func firstOf(args []string, names ...string) string {
	if len(args) > 0 {
		return args[0]
	}
	for _, n := range names {
		if n != "" {
			return n
		}
	}
	return ""
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

func (e *env) contextRm() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "remove a saved context",
		Args:    oneName,
	}
	cmd.ValidArgsFunction = e.completeContexts
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		_, err := e.changeContexts(func(s *contextStore) error {
			if _, ok := s.Contexts[args[0]]; !ok {
				_, err := s.get(args[0])
				return usagef("%v", err)
			}
			delete(s.Contexts, args[0])
			if s.Current == args[0] {
				s.Current = ""
			}
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed context %s\n", args[0])
		return nil
	}
	return cmd
}
