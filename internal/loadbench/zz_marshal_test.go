package loadbench

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

func BenchmarkZZMarshal(b *testing.B) {
	bt := newBatch(512, "S00000")
	bt.set("S00001", 1)
	for _, c := range []struct {
		name string
		o    proto.MarshalOptions
	}{{"plain", proto.MarshalOptions{}}, {"det", proto.MarshalOptions{Deterministic: true}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.o.Marshal(bt.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
