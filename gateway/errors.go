package gateway

import "github.com/wsgate/wsgate/internal/wsframe"

// Close errors of the gateway's own making (protocol errors come from
// wsframe). Preallocated: failing a client never allocates on the hot path.
var (
	errBackendOverloaded = &wsframe.Error{Code: wsframe.CloseTryAgainLater, Reason: "backend overloaded"}
	// errRateLimit: the client sent data frames faster than --max-frame-rate.
	errRateLimit = &wsframe.Error{Code: wsframe.ClosePolicyViolation, Reason: "rate limit"}
)
