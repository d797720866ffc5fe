// Package ampy links every AmpyFin payload schema into the binary, so that
// protoregistry.GlobalFiles resolves any of them by full name (the contract
// names payloads as ampy.bars.v1.BarBatch and the generator looks them up).
package ampy

import (
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
