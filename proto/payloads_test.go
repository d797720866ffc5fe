package proto_test

// This test keeps the .proto files (and the Go code generated from them) in
// lock-step with proto/payloads.md, the schema spec of record. It parses the
// markdown and compares every documented message and enum against the
// descriptors that the generated packages register in protoregistry.GlobalFiles.

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Register every generated payload package.
	_ "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/corporate_actions/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/fundamentals/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/fx/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/metrics/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/news/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/ticks/v1"
	_ "github.com/ampyfin/ampy-bus/proto/ampy/universe/v1"
)

const specPath = "payloads.md"

// Counted by hand from payloads.md. The parser must yield at least these, so a
// parse bug that silently yields nothing (or too little) fails the test.
const (
	minMessages = 36
	minEnums    = 6
)

// The 14 packages of payloads.md, in document order.
var wantPackages = []string{
	"ampy.common.v1",
	"ampy.bars.v1",
	"ampy.ticks.v1",
	"ampy.news.v1",
	"ampy.fx.v1",
	"ampy.fundamentals.v1",
	"ampy.corporate_actions.v1",
	"ampy.universe.v1",
	"ampy.signals.v1",
	"ampy.orders.v1",
	"ampy.fills.v1",
	"ampy.positions.v1",
	"ampy.metrics.v1",
	"ampy.control.v1",
}

const commonPkg = "ampy.common.v1"

type fieldSpec struct {
	Name     string
	Type     string // as written: scalar, Timestamp, or a message/enum short name
	Number   int32
	Repeated bool
	Map      bool
	MapKey   string
	MapValue string
	Oneof    string // "" when not in a oneof
}

type messageSpec struct {
	Pkg    string
	Name   string
	Line   int
	Fields []fieldSpec
}

func (m messageSpec) FullName() string { return m.Pkg + "." + m.Name }

type enumValueSpec struct {
	Name   string // with prefix
	Number int32
}

type enumSpec struct {
	Pkg    string
	Name   string
	Line   int
	Prefix string
	Values []enumValueSpec
}

func (e enumSpec) FullName() string { return e.Pkg + "." + e.Name }

type spec struct {
	Packages []string
	Messages []messageSpec
	Enums    []enumSpec
	Items    int // number of "- " item lines inside package sections
}

var (
	rePackageHeading = regexp.MustCompile(`^## (ampy\.[a-z_]+\.v1)\b`)
	reEnumItem       = regexp.MustCompile(`^enum ([A-Z][A-Za-z0-9]*): (.+)$`)
	reMessageItem    = regexp.MustCompile(`^([A-Z][A-Za-z0-9]*): (.+)$`)
	reEnumPrefix     = regexp.MustCompile("`([A-Z][A-Z0-9_]*_)`")
	reEnumValue      = regexp.MustCompile(`^([A-Z][A-Z0-9_]*) (\d+)$`)
	reParenthetical  = regexp.MustCompile(`\s*\([^()]*\)`)
	reOneof          = regexp.MustCompile(`^oneof ([a-z][a-z0-9_]*) \{(.*)\}$`)
	reRepeated       = regexp.MustCompile(`^repeated ([A-Za-z][A-Za-z0-9_.]*) ([a-z][a-z0-9_]*) = (\d+)$`)
	reMap            = regexp.MustCompile(`^map<([a-z0-9]+),\s*([A-Za-z][A-Za-z0-9_.]*)> ([a-z][a-z0-9_]*) = (\d+)$`)
	rePlain          = regexp.MustCompile(`^([a-z][a-z0-9_]*) ([A-Za-z][A-Za-z0-9_.]*) = (\d+)$`)
	reRawItem        = regexp.MustCompile(`(?m)^- `)
)

// parseSpec reads payloads.md. Items are lines starting with "- " inside a
// "## ampy.<pkg>.v1" section; lines starting with two spaces continue the
// previous item. Any "## " heading that is not a package ends the section.
func parseSpec(path string) (*spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	s := &spec{}
	pkg := ""
	var item strings.Builder
	itemLine := 0
	flush := func() error {
		if itemLine == 0 {
			return nil
		}
		text := item.String()
		line := itemLine
		item.Reset()
		itemLine = 0
		return s.addItem(pkg, line, text)
	}

	sc := bufio.NewScanner(f)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			if err := flush(); err != nil {
				return nil, err
			}
			pkg = ""
			if m := rePackageHeading.FindStringSubmatch(line); m != nil {
				pkg = m[1]
				s.Packages = append(s.Packages, pkg)
			}
		case strings.HasPrefix(line, "- "):
			if err := flush(); err != nil {
				return nil, err
			}
			if pkg == "" {
				return nil, fmt.Errorf("line %d: item outside a package section: %q", lineNo, line)
			}
			s.Items++
			itemLine = lineNo
			item.WriteString(strings.TrimPrefix(line, "- "))
		case strings.HasPrefix(line, "  ") && itemLine != 0:
			item.WriteString(" ")
			item.WriteString(strings.TrimSpace(line))
		default:
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *spec) addItem(pkg string, line int, text string) error {
	text = strings.TrimSpace(text)
	if m := reEnumItem.FindStringSubmatch(text); m != nil {
		e, err := parseEnum(pkg, m[1], m[2])
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		e.Line = line
		s.Enums = append(s.Enums, e)
		return nil
	}
	if m := reMessageItem.FindStringSubmatch(text); m != nil {
		msg, err := parseMessage(pkg, m[1], m[2])
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		msg.Line = line
		s.Messages = append(s.Messages, msg)
		return nil
	}
	return fmt.Errorf("line %d: unrecognised item %q", line, text)
}

// parseEnum parses "UNSPECIFIED 0, BUY 1, SELL 2 (prefix `SIDE_`)".
func parseEnum(pkg, name, body string) (enumSpec, error) {
	prefixes := reEnumPrefix.FindAllStringSubmatch(body, -1)
	if len(prefixes) != 1 {
		return enumSpec{}, fmt.Errorf("enum %s: want exactly one `PREFIX_`, got %d", name, len(prefixes))
	}
	e := enumSpec{Pkg: pkg, Name: name, Prefix: prefixes[0][1]}
	body = strings.TrimSpace(reParenthetical.ReplaceAllString(body, ""))
	for _, part := range strings.Split(body, ",") {
		part = strings.TrimSpace(part)
		m := reEnumValue.FindStringSubmatch(part)
		if m == nil {
			return enumSpec{}, fmt.Errorf("enum %s: bad value %q", name, part)
		}
		n, err := strconv.ParseInt(m[2], 10, 32)
		if err != nil {
			return enumSpec{}, err
		}
		e.Values = append(e.Values, enumValueSpec{Name: e.Prefix + m[1], Number: int32(n)})
	}
	return e, nil
}

// parseMessage parses "a T = 1; repeated T b = 2; oneof x { c T = 3; d T = 4 }; ...".
// Parenthetical remarks such as "(inclusive)" are dropped first.
func parseMessage(pkg, name, body string) (messageSpec, error) {
	msg := messageSpec{Pkg: pkg, Name: name}
	body = reParenthetical.ReplaceAllString(body, "")
	segs, err := splitTopLevel(body)
	if err != nil {
		return messageSpec{}, fmt.Errorf("message %s: %w", name, err)
	}
	for _, seg := range segs {
		if m := reOneof.FindStringSubmatch(seg); m != nil {
			inner, err := splitTopLevel(m[2])
			if err != nil {
				return messageSpec{}, fmt.Errorf("message %s oneof %s: %w", name, m[1], err)
			}
			if len(inner) == 0 {
				return messageSpec{}, fmt.Errorf("message %s: empty oneof %s", name, m[1])
			}
			for _, in := range inner {
				fs, err := parseField(in)
				if err != nil {
					return messageSpec{}, fmt.Errorf("message %s oneof %s: %w", name, m[1], err)
				}
				if fs.Repeated || fs.Map {
					return messageSpec{}, fmt.Errorf("message %s: repeated/map field %q in oneof", name, in)
				}
				fs.Oneof = m[1]
				msg.Fields = append(msg.Fields, fs)
			}
			continue
		}
		fs, err := parseField(seg)
		if err != nil {
			return messageSpec{}, fmt.Errorf("message %s: %w", name, err)
		}
		msg.Fields = append(msg.Fields, fs)
	}
	if len(msg.Fields) == 0 {
		return messageSpec{}, fmt.Errorf("message %s: no fields", name)
	}
	return msg, nil
}

// splitTopLevel splits on ';' outside braces and trims the parts.
func splitTopLevel(s string) ([]string, error) {
	var out []string
	depth, start := 0, 0
	emit := func(part string) {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	for i, r := range s {
		switch r {
		case '{':
			depth++
		case '}':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced '}' in %q", s)
			}
		case ';':
			if depth == 0 {
				emit(s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced '{' in %q", s)
	}
	emit(s[start:])
	return out, nil
}

func parseField(s string) (fieldSpec, error) {
	num := func(v string) (int32, error) {
		n, err := strconv.ParseInt(v, 10, 32)
		return int32(n), err
	}
	if m := reRepeated.FindStringSubmatch(s); m != nil {
		n, err := num(m[3])
		return fieldSpec{Name: m[2], Type: m[1], Number: n, Repeated: true}, err
	}
	if m := reMap.FindStringSubmatch(s); m != nil {
		n, err := num(m[4])
		return fieldSpec{Name: m[3], Type: "map", Number: n, Map: true, MapKey: m[1], MapValue: m[2]}, err
	}
	if m := rePlain.FindStringSubmatch(s); m != nil {
		n, err := num(m[3])
		return fieldSpec{Name: m[1], Type: m[2], Number: n}, err
	}
	return fieldSpec{}, fmt.Errorf("unrecognised field %q", s)
}

var scalarKinds = map[string]protoreflect.Kind{
	"string":   protoreflect.StringKind,
	"bytes":    protoreflect.BytesKind,
	"bool":     protoreflect.BoolKind,
	"int32":    protoreflect.Int32Kind,
	"int64":    protoreflect.Int64Kind,
	"sint32":   protoreflect.Sint32Kind,
	"sint64":   protoreflect.Sint64Kind,
	"uint32":   protoreflect.Uint32Kind,
	"uint64":   protoreflect.Uint64Kind,
	"fixed32":  protoreflect.Fixed32Kind,
	"fixed64":  protoreflect.Fixed64Kind,
	"sfixed32": protoreflect.Sfixed32Kind,
	"sfixed64": protoreflect.Sfixed64Kind,
	"float":    protoreflect.FloatKind,
	"double":   protoreflect.DoubleKind,
}

// resolve maps a type as written in payloads.md (in package pkg) to the kind
// and, for messages/enums, the full name it must have in the descriptors.
// Short names resolve in the own package first, then in ampy.common.v1.
func (s *spec) resolve(pkg, typ string) (protoreflect.Kind, protoreflect.FullName, error) {
	if k, ok := scalarKinds[typ]; ok {
		return k, "", nil
	}
	if typ == "Timestamp" || typ == "google.protobuf.Timestamp" {
		return protoreflect.MessageKind, "google.protobuf.Timestamp", nil
	}
	candidates := []string{typ}
	if !strings.Contains(typ, ".") {
		candidates = []string{pkg + "." + typ, commonPkg + "." + typ}
	}
	for _, full := range candidates {
		for _, m := range s.Messages {
			if m.FullName() == full {
				return protoreflect.MessageKind, protoreflect.FullName(full), nil
			}
		}
		for _, e := range s.Enums {
			if e.FullName() == full {
				return protoreflect.EnumKind, protoreflect.FullName(full), nil
			}
		}
	}
	return 0, "", fmt.Errorf("type %q (package %s) is not a scalar, Timestamp, or a message/enum of payloads.md", typ, pkg)
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	s, err := parseSpec(specPath)
	require.NoError(t, err, "parse %s", specPath)
	return s
}

// fileFor returns the .proto path a package must live in:
// ampy.corporate_actions.v1 -> ampy/corporate_actions/v1/corporate_actions.proto.
func fileFor(pkg string) string {
	parts := strings.Split(pkg, ".")
	return fmt.Sprintf("ampy/%s/v1/%s.proto", parts[1], parts[1])
}

func TestSpecParses(t *testing.T) {
	s := loadSpec(t)

	raw, err := os.ReadFile(specPath)
	require.NoError(t, err)

	require.Equal(t, wantPackages, s.Packages, "package sections of %s", specPath)
	require.Len(t, s.Packages, 14)
	require.GreaterOrEqual(t, len(s.Messages), minMessages, "messages parsed from %s", specPath)
	require.GreaterOrEqual(t, len(s.Enums), minEnums, "enums parsed from %s", specPath)
	// Every "- " item line of the document became exactly one message or enum.
	require.Equal(t, len(reRawItem.FindAll(raw, -1)), s.Items, "item lines seen by the parser")
	require.Equal(t, s.Items, len(s.Messages)+len(s.Enums), "every item parsed as a message or enum")

	seen := map[string]int{}
	for _, m := range s.Messages {
		require.Zero(t, seen[m.FullName()], "%s declared twice (lines %d and %d)", m.FullName(), seen[m.FullName()], m.Line)
		seen[m.FullName()] = m.Line
	}
	for _, e := range s.Enums {
		require.Zero(t, seen[e.FullName()], "%s declared twice (lines %d and %d)", e.FullName(), seen[e.FullName()], e.Line)
		seen[e.FullName()] = e.Line
	}
	for _, pkg := range wantPackages {
		n := 0
		for _, m := range s.Messages {
			if m.Pkg == pkg {
				n++
			}
		}
		require.Positive(t, n, "package %s has no messages", pkg)
	}
}

func TestMessagesMatchSpec(t *testing.T) {
	s := loadSpec(t)
	require.GreaterOrEqual(t, len(s.Messages), minMessages)

	for _, ms := range s.Messages {
		t.Run(ms.FullName(), func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(ms.FullName()))
			require.NoError(t, err, "message %s (payloads.md line %d) is not registered", ms.FullName(), ms.Line)
			md, ok := d.(protoreflect.MessageDescriptor)
			require.True(t, ok, "%s is a %T, want a message", ms.FullName(), d)
			require.Equal(t, fileFor(ms.Pkg), md.ParentFile().Path(), "file declaring %s", ms.FullName())
			require.Equal(t, protoreflect.Proto3, md.Syntax())

			wantNames := make([]string, 0, len(ms.Fields))
			for _, f := range ms.Fields {
				wantNames = append(wantNames, f.Name)
			}
			gotNames := make([]string, 0, md.Fields().Len())
			for i := 0; i < md.Fields().Len(); i++ {
				gotNames = append(gotNames, string(md.Fields().Get(i).Name()))
			}
			require.ElementsMatch(t, wantNames, gotNames, "field set of %s", ms.FullName())

			wantOneofs := map[string]int{}
			for _, fs := range ms.Fields {
				fs := fs
				if fs.Oneof != "" {
					wantOneofs[fs.Oneof]++
				}
				fd := md.Fields().ByName(protoreflect.Name(fs.Name))
				require.NotNil(t, fd, "field %s.%s", ms.FullName(), fs.Name)
				where := fmt.Sprintf("%s.%s", ms.FullName(), fs.Name)

				require.EqualValues(t, fs.Number, fd.Number(), "number of %s", where)
				byNum := md.Fields().ByNumber(protoreflect.FieldNumber(fs.Number))
				require.NotNil(t, byNum, "field number %d of %s", fs.Number, ms.FullName())
				require.EqualValues(t, fs.Name, byNum.Name(), "name of field %d of %s", fs.Number, ms.FullName())

				require.Equal(t, fs.Map, fd.IsMap(), "map-ness of %s", where)
				require.Equal(t, fs.Repeated || fs.Map, fd.Cardinality() == protoreflect.Repeated, "repeated-ness of %s", where)
				require.Equal(t, fs.Repeated && !fs.Map, fd.IsList(), "list-ness of %s", where)

				if fs.Map {
					kk, kn, err := s.resolve(ms.Pkg, fs.MapKey)
					require.NoError(t, err, where)
					requireKind(t, where+" (map key)", kk, kn, fd.MapKey())
					vk, vn, err := s.resolve(ms.Pkg, fs.MapValue)
					require.NoError(t, err, where)
					requireKind(t, where+" (map value)", vk, vn, fd.MapValue())
				} else {
					k, n, err := s.resolve(ms.Pkg, fs.Type)
					require.NoError(t, err, where)
					requireKind(t, where, k, n, fd)
				}

				if fs.Oneof == "" {
					require.Nil(t, fd.ContainingOneof(), "%s must not be in a oneof", where)
					require.False(t, fd.HasOptionalKeyword(), "%s must not be proto3 optional", where)
				} else {
					od := fd.ContainingOneof()
					require.NotNil(t, od, "%s must be in oneof %s", where, fs.Oneof)
					require.EqualValues(t, fs.Oneof, od.Name(), "oneof of %s", where)
					require.False(t, od.IsSynthetic(), "oneof of %s", where)
				}
			}

			gotOneofs := map[string]int{}
			for i := 0; i < md.Oneofs().Len(); i++ {
				od := md.Oneofs().Get(i)
				gotOneofs[string(od.Name())] = od.Fields().Len()
			}
			require.Equal(t, wantOneofs, gotOneofs, "oneofs of %s", ms.FullName())

			// Only map entries may be nested; payloads.md declares no nested types.
			for i := 0; i < md.Messages().Len(); i++ {
				require.True(t, md.Messages().Get(i).IsMapEntry(), "unexpected nested message %s", md.Messages().Get(i).FullName())
			}
			require.Zero(t, md.Enums().Len(), "unexpected nested enum in %s", ms.FullName())
		})
	}
}

func requireKind(t *testing.T, where string, kind protoreflect.Kind, full protoreflect.FullName, fd protoreflect.FieldDescriptor) {
	t.Helper()
	require.Equal(t, kind.String(), fd.Kind().String(), "kind of %s", where)
	switch kind {
	case protoreflect.MessageKind:
		require.NotNil(t, fd.Message(), where)
		require.Equal(t, full, fd.Message().FullName(), "message type of %s", where)
	case protoreflect.EnumKind:
		require.NotNil(t, fd.Enum(), where)
		require.Equal(t, full, fd.Enum().FullName(), "enum type of %s", where)
	}
}

func TestEnumsMatchSpec(t *testing.T) {
	s := loadSpec(t)
	require.GreaterOrEqual(t, len(s.Enums), minEnums)

	for _, es := range s.Enums {
		t.Run(es.FullName(), func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(es.FullName()))
			require.NoError(t, err, "enum %s (payloads.md line %d) is not registered", es.FullName(), es.Line)
			ed, ok := d.(protoreflect.EnumDescriptor)
			require.True(t, ok, "%s is a %T, want an enum", es.FullName(), d)
			require.Equal(t, fileFor(es.Pkg), ed.ParentFile().Path(), "file declaring %s", es.FullName())

			want := map[string]int32{}
			for _, v := range es.Values {
				require.True(t, strings.HasPrefix(v.Name, es.Prefix))
				want[v.Name] = v.Number
			}
			got := map[string]int32{}
			for i := 0; i < ed.Values().Len(); i++ {
				v := ed.Values().Get(i)
				got[string(v.Name())] = int32(v.Number())
			}
			require.Equal(t, want, got, "values of %s", es.FullName())
			require.EqualValues(t, es.Prefix+"UNSPECIFIED", ed.Values().ByNumber(0).Name(), "zero value of %s", es.FullName())
		})
	}
}

// TestNoUndocumentedTypes checks the other direction: the registered ampy.*
// files declare exactly the packages, messages and enums of payloads.md.
func TestNoUndocumentedTypes(t *testing.T) {
	s := loadSpec(t)

	want := map[string]bool{}
	for _, m := range s.Messages {
		want[m.FullName()] = true
	}
	for _, e := range s.Enums {
		want[e.FullName()] = true
	}

	got := map[string]bool{}
	var files []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "ampy.") {
			return true
		}
		files = append(files, fd.Path())
		for i := 0; i < fd.Messages().Len(); i++ {
			got[string(fd.Messages().Get(i).FullName())] = true
		}
		for i := 0; i < fd.Enums().Len(); i++ {
			got[string(fd.Enums().Get(i).FullName())] = true
		}
		return true
	})

	var wantFiles []string
	for _, pkg := range s.Packages {
		wantFiles = append(wantFiles, fileFor(pkg))
	}
	sort.Strings(files)
	sort.Strings(wantFiles)
	require.Equal(t, wantFiles, files, "registered ampy.* .proto files")
	require.Len(t, files, 14)
	require.Equal(t, want, got, "registered ampy.* messages and enums")
}
