package kafkabinding

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ACL is one allow rule a Kafka principal needs for what the bus does on
// its behalf. The binding knows which requests its producer, consumers and
// admin calls make, so it is the one place that says which ACLs each
// operation needs; ampybus-gen composes them per service from the contract.
type ACL struct {
	// Principal is User:<service>.
	Principal string
	Resource  kmsg.ACLResourceType
	Pattern   kmsg.ACLResourcePatternType
	// Name is the topic, group or prefix; kafka-cluster for the cluster.
	Name      string
	Operation kmsg.ACLOperation
}

// String is the rule as kafka-acls would describe it.
func (a ACL) String() string {
	return fmt.Sprintf("%s allow %s on %s %s (%s)", a.Principal, strings.ToLower(a.Operation.String()),
		strings.ToLower(a.Resource.String()), a.Name, strings.ToLower(a.Pattern.String()))
}

// Principal is a service's principal.
func Principal(service string) string { return "User:" + service }

func acls(principal string, res kmsg.ACLResourceType, pat kmsg.ACLResourcePatternType, name string, ops ...kmsg.ACLOperation) []ACL {
	out := make([]ACL, 0, len(ops))
	for _, op := range ops {
		out = append(out, ACL{Principal: principal, Resource: res, Pattern: pat, Name: name, Operation: op})
	}
	return out
}

// ProduceACLs lets a principal write a domain's topic and read its metadata.
func ProduceACLs(principal, topic string) []ACL {
	return acls(principal, kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeLiteral, topic,
		kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe)
}

// ConsumeACLs lets a principal read a topic as a member of group: fetch,
// commit and the lag it reports.
func ConsumeACLs(principal, topic, group string) []ACL {
	out := ReadACLs(principal, topic)
	return append(out, acls(principal, kmsg.ACLResourceTypeGroup, kmsg.ACLResourcePatternTypeLiteral, group,
		kmsg.ACLOperationRead, kmsg.ACLOperationDescribe)...)
}

// LagACLs let a principal read the lag of a group it does not belong to
// (transport.LagReader): describe the group and its committed offsets, and
// the topic's end offsets.
func LagACLs(principal, topic, group string) []ACL {
	out := acls(principal, kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeLiteral, topic, kmsg.ACLOperationDescribe)
	return append(out, acls(principal, kmsg.ACLResourceTypeGroup, kmsg.ACLResourcePatternTypeLiteral, group, kmsg.ACLOperationDescribe)...)
}

// ReadACLs lets a principal read a topic outside any group (a replay, a
// snapshot).
func ReadACLs(principal, topic string) []ACL {
	return acls(principal, kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeLiteral, topic,
		kmsg.ACLOperationRead, kmsg.ACLOperationDescribe)
}

// AdminACLs lets a principal create and reconcile every topic under prefix
// (ampy.prod.) and manage ACLs: provisioning.
func AdminACLs(principal, prefix string) []ACL {
	out := acls(principal, kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypePrefixed, prefix,
		kmsg.ACLOperationCreate, kmsg.ACLOperationAlter, kmsg.ACLOperationAlterConfigs,
		kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationDescribe)
	return append(out, acls(principal, kmsg.ACLResourceTypeCluster, kmsg.ACLResourcePatternTypeLiteral, "kafka-cluster",
		kmsg.ACLOperationDescribe, kmsg.ACLOperationAlter)...)
}

// ApplyACLs creates the rules on the cluster (CreateACLs is idempotent for
// rules that exist); the identity needs Alter on the cluster.
func ApplyACLs(ctx context.Context, t *Transport, rules []ACL) error {
	var errs []error
	for _, r := range rules {
		one := kadm.NewACLs().Allow(r.Principal).AllowHosts("*").ResourcePatternType(kadm.ACLPattern(r.Pattern)).Operations(kadm.ACLOperation(r.Operation))
		switch r.Resource {
		case kmsg.ACLResourceTypeTopic:
			one = one.Topics(r.Name)
		case kmsg.ACLResourceTypeGroup:
			one = one.Groups(r.Name)
		case kmsg.ACLResourceTypeCluster:
			one = one.Clusters()
		default:
			errs = append(errs, fmt.Errorf("ACL %s: unsupported resource", r))
			continue
		}
		results, err := t.adm.CreateACLs(ctx, one)
		if err != nil {
			errs = append(errs, fmt.Errorf("apply %s: %w", r, mapErr(err)))
			continue
		}
		for _, res := range results {
			if res.Err != nil {
				errs = append(errs, fmt.Errorf("apply %s: %w", r, mapErr(res.Err)))
			}
		}
	}
	return errors.Join(errs...)
}
