package conformance_test

import (
	"testing"

	"github.com/ampyfin/ampy-bus/runtime/conformance"
)

func TestNATS(t *testing.T)  { conformance.Run(t, conformance.NATS) }
func TestKafka(t *testing.T) { conformance.Run(t, conformance.Kafka) }
