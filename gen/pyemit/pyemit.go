// Package pyemit renders a contract as a Python package, beside the Go one:
// per domain, topic and pattern builders that check tokens as Go does, the
// contract's partition and dedupe keys derived from payloads exactly as Go
// derives them, and schema constants and hashes; the payload types come
// from the same compiled descriptors, in a private descriptor pool. The
// hand-written runtime (envelope headers, Go-identical gzip, the Kafka
// partitioner) is copied beside it from package python, so a service
// repository needs nothing from a package index.
package pyemit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/python"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// Package is the generated package's import name; the runtime is "ampybus".
const Package = "ampybus_contract"

// Emitter writes the Python package of a contract: ampybus/ (the runtime)
// and ampybus_contract/ (the contract) below its directory.
type Emitter struct {
	// Source names the contract file in headers ("contract.yaml").
	Source string
}

// Name implements output.Emitter.
func (Emitter) Name() string { return "python" }

// Emit implements output.Emitter.
func (e Emitter) Emit(c *contract.Contract) (map[string][]byte, error) {
	files := map[string][]byte{}
	if err := fs.WalkDir(python.Runtime, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".py") {
			return err
		}
		src, err := fs.ReadFile(python.Runtime, p)
		if err != nil {
			return err
		}
		files[p] = append([]byte("# "+output.Marker+"\n# Copied from the ampy-bus Python runtime (python/"+p+").\n"), src...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the Python runtime: %w", err)
	}
	schemas, err := e.schemas(c)
	if err != nil {
		return nil, err
	}
	files[Package+"/_schemas.py"] = schemas
	var mods []string
	for _, d := range c.Domains {
		mod := moduleName(d)
		mods = append(mods, mod)
		files[Package+"/"+mod+".py"] = e.domain(c, d)
	}
	files[Package+"/__init__.py"] = e.init(c, mods)
	return files, nil
}

func header(b *bytes.Buffer, source, what string) {
	fmt.Fprintf(b, "# %s\n# Source: %s, %s.\n", output.Marker, source, what)
}

func (e Emitter) init(c *contract.Contract, mods []string) []byte {
	var b bytes.Buffer
	header(&b, e.Source, "every domain")
	fmt.Fprintf(&b, "\"\"\"The bus contract %s as Python: one module per domain.\n\n", pyStr(e.Source))
	b.WriteString("Each module builds and checks its domain's topics, derives the partition\n")
	b.WriteString("and dedupe keys from payloads exactly as the Go side does, and names the\n")
	b.WriteString("payload types and their schema hashes. The envelope, gzip and Kafka\n")
	b.WriteString("helpers are in the ampybus package beside it.\n\"\"\"\n\n")
	b.WriteString("from __future__ import annotations\n\nimport importlib\nfrom typing import Any\n\nfrom ampybus.route import ContractError, Raw, Route\n\n")
	fmt.Fprintf(&b, "NAMESPACE = %s\n", pyStr(c.Namespace))
	fmt.Fprintf(&b, "ENVS = %s\n", pyTuple(c.Envs))
	fmt.Fprintf(&b, "DOMAINS = %s\n", pyTuple(mods))
	b.WriteString(`

def routes() -> list[Route | Raw]:
    """Every subtopic of the contract, domain by domain: a Route for a
    typed payload, a Raw for opaque bytes (the dead-letter queue's)."""
    out: list[Route | Raw] = []
    for name in DOMAINS:
        module = importlib.import_module(__name__ + "." + name)
        out.extend(v for v in vars(module).values() if isinstance(v, (Route, Raw)))
    return out


def resolve(topic: str) -> tuple[Route | Raw, Any]:
    """The route of a concrete topic and its subtopic; ContractError when
    no subtopic of the contract has it."""
    for r in routes():
        for env in r.envs:
            p = r.prefix(env) + "."
            if topic.startswith(p):
                try:
                    return r, r.parse_subtopic(topic[len(p):])
                except ContractError:
                    continue
    raise ContractError(f"topic {topic!r} is no subtopic of the contract")
`)
	return b.Bytes()
}

// schemas renders _schemas.py: every payload's file and its imports, in
// dependency order, loaded into a private descriptor pool.
func (e Emitter) schemas(c *contract.Contract) ([]byte, error) {
	var order []protoreflect.FileDescriptor
	seen := map[string]bool{}
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := range imps.Len() {
			visit(imps.Get(i).FileDescriptor)
		}
		order = append(order, fd)
	}
	var roots []protoreflect.FileDescriptor
	for _, d := range c.Domains {
		for _, s := range d.Subtopics {
			if s.Payload != nil {
				roots = append(roots, s.Payload.ParentFile())
			}
		}
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].Path() < roots[j].Path() })
	for _, fd := range roots {
		visit(fd)
	}
	var b bytes.Buffer
	header(&b, e.Source, "the payload schemas")
	b.WriteString(`"""The payload types, compiled from the same descriptors the Go side uses.

They live in a private descriptor pool, so a service's own generated
modules of the same .proto files load beside them without a conflict; the
wire form is the same either way.
"""

from __future__ import annotations

import base64

from google.protobuf import descriptor_pool, message_factory

_POOL = descriptor_pool.DescriptorPool()

# Serialized FileDescriptorProtos, each after the files it imports.
_FILES = (
`)
	opts := proto.MarshalOptions{Deterministic: true}
	for _, fd := range order {
		raw, err := opts.Marshal(protodesc.ToFileDescriptorProto(fd))
		if err != nil {
			return nil, fmt.Errorf("serialize %s: %w", fd.Path(), err)
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		fmt.Fprintf(&b, "    # %s\n    base64.b64decode(\n", fd.Path())
		for len(enc) > 0 {
			n := min(len(enc), 76)
			fmt.Fprintf(&b, "        %q\n", enc[:n])
			enc = enc[n:]
		}
		b.WriteString("    ),\n")
	}
	b.WriteString(`)

for _serialized in _FILES:
    _POOL.AddSerializedFile(_serialized)


def message_class(full_name: str) -> type:
    """The Python class of the payload message full_name."""
    desc = _POOL.FindMessageTypeByName(full_name)
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(_POOL).GetPrototype(desc)
`)
	return b.Bytes(), nil
}

func (e Emitter) domain(c *contract.Contract, d *contract.Domain) []byte {
	var b bytes.Buffer
	header(&b, e.Source, "domain "+d.Name)
	fmt.Fprintf(&b, "\"\"\"%s %s: %s\n\nTopics:\n", d.Name, d.Version, docText(d.Description))
	for _, s := range d.Subtopics {
		fmt.Fprintf(&b, "    %s.{env}.%s.%s.%s carrying %s\n", c.Namespace, d.Name, d.Version, s.Pattern.Text, s.PayloadName)
	}
	b.WriteString("\"\"\"\n\nfrom __future__ import annotations\n\nfrom typing import Any\n\nfrom ampybus import route as _route\nfrom ampybus.route import ContractError, Keys\n\nfrom . import _schemas\n\n")
	for _, kv := range [][2]string{
		{"NAMESPACE", pyStr(c.Namespace)},
		{"DOMAIN", pyStr(d.Name)},
		{"VERSION", pyStr(d.Version)},
		{"ENVS", pyTuple(c.Envs)},
		{"PARTITIONS", strconv.Itoa(d.Partitions)},
		{"MAX_PAYLOAD", strconv.FormatInt(d.MaxPayload, 10)},
		{"MAX_INFLATED", strconv.FormatInt(d.MaxInflated, 10)},
		{"COMPRESS_ABOVE", strconv.FormatInt(d.CompressAbove, 10)},
		{"ORDERING", pyStr(string(d.Ordering.Rule))},
	} {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	b.WriteString(`

def prefix(env: str) -> str:
    """The domain's topic prefix in env: the Kafka topic, and the start of
    every NATS subject of the domain."""
    return _route.prefix(NAMESPACE, env, DOMAIN, VERSION, ENVS)
`)
	for _, s := range d.Subtopics {
		e.subtopic(&b, c, d, s)
	}
	return b.Bytes()
}

func (e Emitter) subtopic(b *bytes.Buffer, c *contract.Contract, d *contract.Domain, s *contract.Subtopic) {
	U, C, L := upper(s), class(s), lower(s)
	params := s.Pattern.Params()
	topic := fmt.Sprintf("%s.{env}.%s.%s.%s", c.Namespace, d.Name, d.Version, s.Pattern.Text)
	fmt.Fprintf(b, "\n\n# --- %s: %s", topic, s.PayloadName)
	if s.Description != "" {
		fmt.Fprintf(b, "\n# %s", strings.ReplaceAll(strings.TrimSpace(s.Description), "\n", "\n# "))
	}
	fmt.Fprintf(b, "\n\n%sPATTERN = %s\n", U, pyStr(s.Pattern.Text))
	typed := s.Payload != nil
	if typed {
		pay := string(s.Payload.Name())
		fmt.Fprintf(b, "%sSCHEMA_FQDN = %s\n%sSCHEMA_VERSION = %s\n", U, pyStr(string(s.Payload.FullName())), U, pyStr(s.SchemaVersion))
		fmt.Fprintf(b, "#: The hash covers the compiled descriptor of the payload and every type it uses.\n%sSCHEMA_HASH = %s\n", U, pyStr(schema.Hash(s.Payload)))
		fmt.Fprintf(b, "%sPAYLOAD = _schemas.message_class(%sSCHEMA_FQDN)\n", U, U)
		if aliasOK(d, s) {
			fmt.Fprintf(b, "%s = %sPAYLOAD\n", pay, U)
		}
	}

	// The subtopic class.
	fmt.Fprintf(b, "\n\nclass %sSubtopic:\n    \"\"\"A validated %s subtopic.\"\"\"\n\n", C, s.Pattern.Text)
	if len(params) == 0 {
		b.WriteString("    __slots__ = ()\n\n")
	} else {
		fmt.Fprintf(b, "    __slots__ = %s\n\n", pyTuple(pyIdents(params)))
	}
	args := make([]string, len(params))
	for i, p := range params {
		args[i] = ident(p) + ": str"
	}
	fmt.Fprintf(b, "    def __init__(self%s) -> None:\n", prefixed(", ", args))
	if len(params) == 0 {
		b.WriteString("        pass\n")
	}
	for _, p := range params {
		fmt.Fprintf(b, "        self.%s = _route.check_token(%s, %s)\n", ident(p), pyStr(p), ident(p))
	}
	fmt.Fprintf(b, "\n    def __str__(self) -> str:\n        \"\"\"The subtopic as it appears in the topic, as %s.\"\"\"\n        return %s\n", s.Pattern.Text, subtopicExpr(s.Pattern))
	fmt.Fprintf(b, "\n    def __repr__(self) -> str:\n        return f\"%sSubtopic({str(self)!r})\"\n", C)
	fmt.Fprintf(b, "\n    def __eq__(self, other: object) -> bool:\n        return isinstance(other, %sSubtopic) and str(self) == str(other)\n", C)
	b.WriteString("\n    def __hash__(self) -> int:\n        return hash(str(self))\n")
	fmt.Fprintf(b, "\n    @classmethod\n    def parse(cls, subtopic: str) -> %sSubtopic:\n        \"\"\"Reads a subtopic in its topic form, as %s.\"\"\"\n", C, s.Pattern.Text)
	if len(params) == 0 {
		fmt.Fprintf(b, "        _route.split_subtopic(subtopic, %sPATTERN)\n        return cls()\n", U)
	} else {
		fmt.Fprintf(b, "        p = _route.split_subtopic(subtopic, %sPATTERN)\n        return cls(%s)\n", U, joinMap(params, func(p string) string { return "p[" + pyStr(p) + "]" }))
	}
	fmt.Fprintf(b, "\n    def topic(self, env: str) -> str:\n        \"\"\"The full topic in env: %s.\"\"\"\n        return prefix(env) + \".\" + str(self)\n", topic)

	// Patterns.
	fmt.Fprintf(b, "\n\ndef all_%s() -> str:\n    \"\"\"The pattern matching every %s subtopic, relative to the domain.\"\"\"\n    return _route.pattern_of(%sPATTERN, {})\n", patternSuffix(s), s.Pattern.Text, U)
	for i := 1; i < len(params); i++ {
		lead := params[:i]
		fmt.Fprintf(b, "\n\ndef %sby_%s(%s) -> str:\n    \"\"\"The pattern of %s subtopics with the given leading parameters.\"\"\"\n    return _route.pattern_of(%sPATTERN, {%s})\n",
			L, strings.Join(lead, "_"), strings.Join(typedArgs(lead), ", "), s.Pattern.Text, U,
			joinMap(lead, func(p string) string { return pyStr(p) + ": " + ident(p) }))
	}
	if !typed {
		fmt.Fprintf(b, `

%sROUTE = _route.Raw(
    namespace=NAMESPACE, domain=DOMAIN, version=VERSION, envs=ENVS,
    pattern=%sPATTERN, parse_subtopic=%sSubtopic.parse, name=%s,
)
`, U, U, C, pyStr(s.Name))
		return
	}
	e.keys(b, s)
	fmt.Fprintf(b, `

%sROUTE = _route.Route(
    namespace=NAMESPACE, domain=DOMAIN, version=VERSION, envs=ENVS, partitions=PARTITIONS,
    max_payload=MAX_PAYLOAD, max_inflated=MAX_INFLATED, compress_above=COMPRESS_ABOVE,
    pattern=%sPATTERN, schema_fqdn=%sSCHEMA_FQDN, schema_version=%sSCHEMA_VERSION, schema_hash=%sSCHEMA_HASH,
    payload=%sPAYLOAD, parse_subtopic=%sSubtopic.parse, keys=%skeys, name=%s,
)
`, U, U, U, U, U, U, C, L, pyStr(s.Name))
}
