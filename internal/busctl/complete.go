package busctl

import (
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// Shell completion completes commands and flags (cobra's), and the values
// only the contract knows: topics, subjects, envs, domains, versions,
// services and consumer groups, plus saved contexts. A --contract on the
// command line being completed is honoured.

// globalCompletions registers the completions of the root's global flags.
func (e *env) globalCompletions(root *cobra.Command) {
	fixed := func(vals ...string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return vals, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("transport", fixed("nats", "kafka"))
	_ = root.RegisterFlagCompletionFunc("sasl-mechanism", fixed("plain", "scram-sha-256", "scram-sha-512"))
	_ = root.RegisterFlagCompletionFunc("bus", fixed("nats://127.0.0.1:4222", "kafka://127.0.0.1:9092", "embedded://nats", "embedded://kafka"))
	_ = root.RegisterFlagCompletionFunc("context", e.completeContexts)
	_ = root.RegisterFlagCompletionFunc("contract", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
	})
	_ = root.RegisterFlagCompletionFunc("proto_path", dirs)
}

func dirs(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// flagCompletions registers completions for a command's own flags, by the
// flag's name: the same name means the same kind of value in every command.
func (e *env) flagCompletions(cmd *cobra.Command) {
	byName := map[string]cobra.CompletionFunc{
		"topic":    e.completeTopics,
		"subject":  e.completeSubjects,
		"env":      e.completeEnvs,
		"domain":   e.completeDomains,
		"version":  e.completeVersions,
		"service":  e.completeServices,
		"group":    e.completeGroups,
		"durable":  e.completeGroups,
		"broker":   values("nats", "kafka"),
		"mode":     values("e2e", "publish", "consume"),
		"from":     values("new", "first"),
		"outdir":   dirs,
		"out":      dirs,
		"dir":      dirs,
		"store":    dirs,
		"subtopic": e.completeSubtopics,
	}
	for name, f := range byName {
		if cmd.Flags().Lookup(name) != nil {
			_ = cmd.RegisterFlagCompletionFunc(name, f)
		}
	}
}

func values(vals ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return matching(vals, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func matching(vals []string, prefix string) []string {
	var out []string
	for _, v := range vals {
		if strings.HasPrefix(strings.SplitN(v, "\t", 2)[0], prefix) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// forCompletion settles the global flags of the line being completed (its
// --contract, --context) as a run would; a mistake in them completes from
// the built-in contract.
func (e *env) forCompletion(cmd *cobra.Command) {
	e.stderr = io.Discard // a warning would garble the shell's line
	e.contracts.done = false
	if err := e.resolve(cmd); err != nil {
		e.contracts.done = false
		e.contracts.path = ""
		e.contracts.protoPaths, e.contracts.descriptorSets = nil, nil
		_ = e.contracts.load(cmd.Context())
	}
}

func (e *env) envs(cmd *cobra.Command) []string {
	e.forCompletion(cmd)
	if ds := catalog.Domains(); len(ds) > 0 {
		return ds[0].Envs
	}
	return nil
}

// completeTopics offers each domain's topic prefix in each env, described
// by its subtopic patterns; the subtopic is the operator's to type.
func (e *env) completeTopics(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []string
	for _, env := range e.envs(cmd) {
		for _, d := range catalog.Domains() {
			var pats []string
			for _, r := range catalog.Routes(d) {
				pats = append(pats, r.Spec.Pattern)
			}
			if len(pats) == 0 {
				pats = e.deadLettered(d)
			}
			out = append(out, cobra.CompletionWithDesc(d.Prefix(env)+".", strings.Join(pats, " | ")))
		}
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
}

// deadLettered names the domains whose dead letters d holds.
func (e *env) deadLettered(d *ampybus.DomainSpec) []string {
	var names []string
	for _, o := range catalog.Domains() {
		if o.DeadLetter == d && !slices.Contains(names, o.Name) {
			names = append(names, o.Name)
		}
	}
	return names
}

// completeSubjects offers an env's whole bus, each domain's, and each
// domain's dead letters.
func (e *env) completeSubjects(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []string
	for _, env := range e.envs(cmd) {
		for _, d := range catalog.Domains() {
			out = append(out, d.Prefix(env)+".>")
			if len(catalog.Routes(d)) == 0 {
				for _, n := range e.deadLettered(d) {
					out = append(out, d.Prefix(env)+"."+n)
				}
			}
		}
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

func (e *env) completeEnvs(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return matching(e.envs(cmd), prefix), cobra.ShellCompDirectiveNoFileComp
}

func (e *env) completeDomains(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	e.forCompletion(cmd)
	var out []string
	for _, d := range catalog.Domains() {
		out = append(out, d.Name)
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

func (e *env) completeVersions(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	e.forCompletion(cmd)
	domain, _ := cmd.Flags().GetString("domain")
	var out []string
	for _, d := range catalog.Domains() {
		if domain == "" || d.Name == domain {
			out = append(out, d.Version)
		}
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

func (e *env) completeSubtopics(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	e.forCompletion(cmd)
	domain, _ := cmd.Flags().GetString("domain")
	var out []string
	for _, d := range catalog.Domains() {
		if d.Name != domain {
			continue
		}
		for _, r := range catalog.Routes(d) {
			out = append(out, r.Spec.Pattern)
		}
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

func (e *env) completeServices(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	e.forCompletion(cmd)
	c, err := servicesContract()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, s := range c.Services {
		out = append(out, cobra.CompletionWithDesc(s.Name, s.Description))
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

// completeGroups offers the consumer groups the contract's services use.
func (e *env) completeGroups(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	e.forCompletion(cmd)
	var groups []string
	domains := map[string][]string{}
	for _, d := range catalog.Domains() {
		for _, g := range d.ConsumerGroups {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
			if !slices.Contains(domains[g], d.Name) {
				domains[g] = append(domains[g], d.Name)
			}
		}
	}
	var out []string
	for _, g := range groups {
		out = append(out, cobra.CompletionWithDesc(g, "consumes "+strings.Join(domains[g], ", ")))
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

func (e *env) completeContexts(_ *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	s, err := openContexts(e.getenv, func(string) {}) // a warning would garble the shell's line
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range s.names() {
		out = append(out, cobra.CompletionWithDesc(n, redactURL(s.Contexts[n].Bus)))
	}
	return matching(out, prefix), cobra.ShellCompDirectiveNoFileComp
}
