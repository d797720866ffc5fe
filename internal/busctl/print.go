package busctl

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
)

// printer writes messages for people (headers in wire order, the payload as
// indented protojson) or, with --json, one JSON object per line for machines.
type printer struct {
	w      io.Writer
	json   bool
	decode bool
}

func (p *printer) message(in *ampybus.Inspected) error {
	m := in.Message()
	if p.json {
		return p.jsonLine(in)
	}
	w := p.w
	fmt.Fprintf(w, "── %s  seq %d  partition %d", in.Topic, in.Sequence(), in.Partition())
	if in.Attempt() > 1 {
		fmt.Fprintf(w, "  attempt %d", in.Attempt())
	}
	fmt.Fprintln(w)
	// Header names in one column, at least as wide as the longest standard one.
	tw := tabwriter.NewWriter(w, 23, 4, 1, ' ', 0)
	for _, f := range m.Headers.Fields() {
		fmt.Fprintf(tw, "   %s\t%s\n", f.Key, f.Value)
	}
	size := fmt.Sprintf("%d bytes", len(m.Payload))
	if m.Headers.BlobRef != "" {
		size = fmt.Sprintf("blob pointer, %d bytes in %s", m.Headers.BlobSize, m.Headers.BlobRef)
	}
	fmt.Fprintf(tw, "   payload\t%s, %s\n", m.Headers.SchemaFQDN, size)
	if in.Problem != "" {
		fmt.Fprintf(tw, "   PROBLEM\t%s\n", in.Problem)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.decode && in.Decoded != nil {
		js, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "}.Marshal(in.Decoded.Payload)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if json.Indent(&b, js, "   ", "  ") == nil {
			js = b.Bytes()
		}
		fmt.Fprintf(w, "   %s\n", js)
	}
	return nil
}

func (p *printer) jsonLine(in *ampybus.Inspected) error {
	m := in.Message()
	var b bytes.Buffer
	b.WriteString("{")
	kv := func(k string, v any) {
		js, _ := json.Marshal(v)
		if b.Len() > 1 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:%s", k, js)
	}
	kv("topic", in.Topic)
	if in.Original != in.Topic {
		kv("original_topic", in.Original)
	}
	kv("sequence", in.Sequence())
	kv("partition", in.Partition())
	kv("attempt", in.Attempt())
	b.WriteString(`,"headers":`)
	b.WriteString(headersJSON(m.Headers))
	if in.Decoded != nil && p.decode {
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(in.Decoded.Payload)
		if err != nil {
			return err
		}
		b.WriteString(`,"payload":`)
		if err := json.Compact(&b, js); err != nil {
			return err
		}
	}
	kv("payload_base64", base64.StdEncoding.EncodeToString(m.Payload))
	if in.Problem != "" {
		kv("problem", in.Problem)
	}
	b.WriteString("}\n")
	_, err := p.w.Write(b.Bytes())
	return err
}

// headersJSON is a JSON object of the wire headers in their fixed order.
func headersJSON(h envelope.Headers) string {
	var b strings.Builder
	b.WriteString("{")
	for i, f := range h.Fields() {
		if i > 0 {
			b.WriteString(",")
		}
		k, _ := json.Marshal(f.Key)
		v, _ := json.Marshal(f.Value)
		b.Write(k)
		b.WriteString(":")
		b.Write(v)
	}
	b.WriteString("}")
	return b.String()
}

// dump writes a message as a fixture file (readable by validate-fixture and
// pub --fixture) and its stored bytes beside it.
func dump(dir string, in *ampybus.Inspected) (string, error) {
	m := in.Message()
	var payload proto.Message
	if in.Decoded != nil {
		payload = in.Decoded.Payload
	}
	f, err := fixture.New("dumped from "+in.Topic+" by ampybusctl", m, payload)
	if err != nil {
		return "", err
	}
	if in.Problem != "" {
		f.Note += "; problem: " + in.Problem
	}
	js, err := f.Marshal()
	if err != nil {
		return "", err
	}
	// Each consumer group dead-letters its own copy under the same message
	// id; the position tells them apart.
	name := fmt.Sprintf("%s-%d-%d", cmp.Or(m.Headers.MessageID, "no-id"), in.Partition(), in.Sequence())
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".bin"), m.Payload, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// progress writes a self-overwriting status line on a terminal, at most
// every 200ms; elsewhere it stays quiet and the summary says it all.
type progress struct {
	w    io.Writer
	on   bool
	last time.Time
}

func (p *progress) update(format string, args ...any) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r\033[K"+format, args...)
}

func (p *progress) done() {
	if p.on && !p.last.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
