package busctl

import (
	"fmt"
	"path/filepath"
	"strings"
)

// usageTemplate is cobra's, with the global flags named once, at the root,
// instead of repeated under every command.
const usageTemplate = `Usage:{{if .HasParent}}{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{else}}
  ampybusctl <command> [flags]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if not .AllChildCommandsHaveGroup}}

Configuration and help:{{range $cmds}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

{{if .HasParent}}Flags{{else}}Global flags, before or after the command{{end}}:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global flags (the bus, credentials, TLS, --context, --contract) go before or after
the command: ampybusctl --help lists them.{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more about a command.{{end}}
`

// upstreamTools are the upstream project's command names: kafkabusctl is
// this tool's command set, kafkainspect its inspection commands (consume
// when none is named), kafkapoison its poison command.
var upstreamTools = map[string]bool{"kafkabusctl": true, "kafkainspect": true, "kafkapoison": true}

// Args turns a process's argv into ampybusctl's arguments: invoked under an
// upstream tool's name (a symlink kafkapoison → ampybusctl), or given one as
// its first argument, the upstream command line runs as written.
func Args(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	args := argv[1:]
	if name := strings.TrimSuffix(filepath.Base(argv[0]), ".exe"); upstreamTools[name] {
		args = append([]string{name}, args...)
	}
	if len(args) == 0 {
		return args
	}
	switch args[0] {
	case "kafkabusctl":
		return args[1:]
	case "kafkainspect":
		if len(args) > 1 && (args[1] == "list-topics" || args[1] == "describe-topic" || args[1] == "consume") {
			return args[1:]
		}
		return append([]string{"consume"}, args[1:]...)
	case "kafkapoison":
		return append([]string{"poison"}, args[1:]...)
	}
	return args
}

// suggest names the command a mistyped one probably meant.
func suggest(name string) string {
	aliases := map[string]string{"publish": "pub", "subscribe": "sub", "dlq": "dlq-inspect", "validate": "validate-fixture", "publish-fixture": "pub --fixture", "contexts": "context"}
	if a, ok := aliases[name]; ok {
		return fmt.Sprintf(" (did you mean %s?)", a)
	}
	for _, c := range commands {
		if strings.HasPrefix(c.name, name) || strings.HasPrefix(name, c.name) {
			return fmt.Sprintf(" (did you mean %s?)", c.name)
		}
	}
	return ""
}
