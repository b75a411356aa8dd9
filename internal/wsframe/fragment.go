package wsframe

// Fragmentation checks the order of data frames on one connection direction
// (RFC 6455 5.4) and remembers the opcode of the message in progress. The
// zero value is ready (no message in progress).
type Fragmentation struct {
	op   OpCode // OpText or OpBinary while a message is open
	open bool
}

// Next checks the header h of the next frame (already accepted by
// ParseHeader) against the message in progress and returns the opcode of
// the message the frame belongs to: OpText or OpBinary for data frames
// (including continuations), h.Op for control frames, which do not affect
// the state. A data frame with h.Fin set ends the message.
func (f *Fragmentation) Next(h Header) (OpCode, error) {
	// RFC 6455 5.4: "Control frames (see Section 5.5) MAY be injected in
	// the middle of a fragmented message."
	if h.Op.IsControl() {
		return h.Op, nil
	}
	// RFC 6455 5.4: "A fragmented message consists of a single frame with
	// the FIN bit clear and an opcode other than 0, followed by zero or
	// more frames with the FIN bit clear and the opcode set to 0, and
	// terminated by a single frame with the FIN bit set and an opcode of
	// 0." ... "The fragments of one message MUST NOT be interleaved
	// between the fragments of another message unless an extension has
	// been negotiated that can interpret the interleaving."
	if h.Op == OpContinuation {
		if !f.open {
			return 0, ErrUnexpectedContinuation
		}
		op := f.op
		if h.Fin {
			f.open = false
		}
		return op, nil
	}
	if f.open {
		return 0, ErrExpectedContinuation
	}
	// RFC 6455 5.4: "An unfragmented message consists of a single frame
	// with the FIN bit set (Section 5.2) and an opcode other than 0."
	if !h.Fin {
		f.op, f.open = h.Op, true
	}
	return h.Op, nil
}

// InMessage reports whether a fragmented message is in progress.
func (f *Fragmentation) InMessage() bool { return f.open }

// Reset forgets any message in progress.
func (f *Fragmentation) Reset() { *f = Fragmentation{} }
