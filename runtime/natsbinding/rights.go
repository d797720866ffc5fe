package natsbinding

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Rights are the subjects a NATS identity needs to publish to and subscribe
// to for what the bus does on its behalf: the binding knows its own wire
// layout (partition tokens, consumer names, the JetStream API it calls), so
// it is the one place that says which permissions each operation needs.
// ampybus-gen composes them per service from the contract.
type Rights struct {
	Publish, Subscribe []string
}

// Add merges o into r, keeping each subject once, sorted.
func (r *Rights) Add(o Rights) {
	r.Publish = mergeSubjects(r.Publish, o.Publish)
	r.Subscribe = mergeSubjects(r.Subscribe, o.Subscribe)
}

func mergeSubjects(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// InboxPrefix is where replies to a service's requests arrive (acks, API
// responses, pulled messages). Each service has its own, so an identity
// allowed to read its inbox reads no other service's replies.
func InboxPrefix(service string) string {
	return "_INBOX_" + strings.Map(func(r rune) rune {
		switch r {
		case '.', ' ', '*', '>', '\t', '@':
			return '_'
		}
		return r
	}, service)
}

// ServiceOf is the service part of a connection name svc@instance.
func ServiceOf(name string) string {
	svc, _, _ := strings.Cut(name, "@")
	return svc
}

// ClientRights is what every connection of a service needs: the account's
// JetStream info (checked on connect) and its own inbox.
func ClientRights(service string) Rights {
	return Rights{Publish: []string{"$JS.API.INFO"}, Subscribe: []string{InboxPrefix(service) + ".>"}}
}

// PublishRights lets a service publish the topics of a stream whose
// subtopics have the given shapes ("*.*", "requests"), in any partition,
// with acks, and read the stream's info.
func PublishRights(prefix string, shapes []string) Rights {
	r := Rights{Publish: []string{"$JS.API.STREAM.INFO." + StreamName(prefix)}}
	for _, s := range shapes {
		r.Publish = append(r.Publish, "*."+prefix+"."+s)
	}
	r.Add(Rights{})
	return r
}

// LagRights let a producer read the lag of a consumer group it does not
// belong to (transport.LagReader): the stream's info and the info of each
// of the group's partition consumers, nothing that reads or settles.
func LagRights(prefix string, partitions int, group string) Rights {
	st := StreamName(prefix)
	r := Rights{Publish: []string{"$JS.API.STREAM.INFO." + st}}
	for p := range max(partitions, 1) {
		r.Publish = append(r.Publish, "$JS.API.CONSUMER.INFO."+st+"."+groupName(group, p))
	}
	r.Add(Rights{})
	return r
}

// GroupRights lets a member of a consumer group read a stream of the given
// partition count: its partition consumers (create, update, info, ack),
// the info and delete of the pull consumers they replace (the layout before
// push delivery), the stream's info, and its group's entries in the
// presence bucket. Pushed messages arrive on the service's inbox.
func GroupRights(prefix string, partitions int, group string) Rights {
	st := StreamName(prefix)
	r := Rights{Publish: []string{"$JS.API.STREAM.INFO." + st}}
	for p := range max(partitions, 1) {
		name, legacy := groupName(group, p), legacyGroupName(group, p)
		r.Publish = append(r.Publish,
			"$JS.API.CONSUMER.CREATE."+st+"."+name, "$JS.API.CONSUMER.CREATE."+st+"."+name+".>",
			"$JS.API.CONSUMER.INFO."+st+"."+name, "$JS.ACK."+st+"."+name+".>",
			"$JS.API.CONSUMER.INFO."+st+"."+legacy, "$JS.API.CONSUMER.DELETE."+st+"."+legacy)
	}
	scope := presenceScope(prefix, group)
	kv := "KV_" + PresenceBucket
	r.Publish = append(r.Publish,
		"$JS.API.STREAM.INFO."+kv,
		"$KV."+PresenceBucket+"."+scope+">",
		"$JS.API.CONSUMER.CREATE."+kv+".*.$KV."+PresenceBucket+"."+scope+"*",
		"$JS.API.CONSUMER.DELETE."+kv+".*",
		"$JS.FC.>")
	r.Add(Rights{})
	return r
}

// presenceScope is the key prefix of one group's members of one stream in
// the presence bucket: STREAM.<hash of prefix and group>.
func presenceScope(prefix, group string) string {
	sum := sha256.Sum256([]byte(prefix + "|" + group))
	return StreamName(prefix) + "." + hex.EncodeToString(sum[:8]) + "."
}

// User is one identity of a nats-server authorization block.
type User struct {
	Name string
	// Password is written as given when it is a $VARIABLE (nats-server
	// reads it from the environment), quoted otherwise.
	Password string
	Rights   Rights
	// All grants every subject (an administrator).
	All bool
}

// AuthorizationConf renders users as a nats-server authorization block,
// one user per identity, each allowed exactly its rights.
func AuthorizationConf(users []User) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		pw := quoteConf(u.Password)
		if strings.HasPrefix(u.Password, "$") {
			pw = u.Password
		}
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: %s\n", quoteConf(u.Name), pw)
		if u.All {
			b.WriteString("      permissions: {publish: \">\", subscribe: \">\"}\n    }\n")
			continue
		}
		b.WriteString("      permissions: {\n")
		for _, side := range []struct {
			name     string
			subjects []string
		}{{"publish", u.Rights.Publish}, {"subscribe", u.Rights.Subscribe}} {
			fmt.Fprintf(&b, "        %s: {allow: [\n", side.name)
			for _, s := range side.subjects {
				fmt.Fprintf(&b, "          %s\n", quoteConf(s))
			}
			b.WriteString("        ]}\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func quoteConf(s string) string { return strconv.Quote(s) }

// ReadRights lets a service read a stream through consumers of its own,
// outside any group: replays, snapshots, taps. The consumers' names are
// chosen by the server, so the right covers any consumer of the stream;
// grant it (the contract's replay right) only to services that need it.
func ReadRights(prefix string) Rights {
	st := StreamName(prefix)
	return Rights{Publish: []string{
		"$JS.API.STREAM.INFO." + st,
		"$JS.API.CONSUMER.CREATE." + st + ".*", "$JS.API.CONSUMER.CREATE." + st + ".*.>",
		"$JS.API.CONSUMER.INFO." + st + ".*", "$JS.API.CONSUMER.MSG.NEXT." + st + ".*",
		"$JS.API.CONSUMER.DELETE." + st + ".*", "$JS.ACK." + st + ".*.>",
	}}
}

// AdminRights lets a service provision: create and update streams and the
// presence bucket, and call any JetStream API.
func AdminRights() Rights {
	return Rights{Publish: []string{"$JS.API.>", "$KV.>", "$JS.ACK.>", "$JS.FC.>"}}
}
