package wire

import "io"

// Reader buffer sizing. A link mostly carries small frames: the buffer
// starts at initialBuf, grows (to at most HeaderSize+maxBody) only when a
// frame does not fit, and drops back to initialBuf once it has been
// oversized for shrinkAfter frames in a row that all fitted initialBuf.
const (
	initialBuf  = 4 << 10
	shrinkAbove = 64 << 10
	shrinkAfter = 1024
)

// maxEmptyReads is how many (0, nil) results from the underlying reader
// ReadFrame tolerates in a row before failing with io.ErrNoProgress.
const maxEmptyReads = 100

// Reader reads frames from a blocking byte stream (the backend side of a
// link, tools, tests).
//
// Buffer invariants: buf[r:w] holds bytes read from the stream and not yet
// returned. Reads fill as much of buf as the stream offers, so one read
// syscall usually yields many small frames. The body returned by ReadFrame
// aliases buf and stays valid until the next ReadFrame call, which may
// compact (move buf[r:w] to the front) or replace buf. A frame's header is
// checked against maxBody before any buffer is grown for its body, so an
// oversized length never allocates. In steady state ReadFrame does not
// allocate.
//
// A Reader is not safe for concurrent use. After an error every later call
// returns the same error.
type Reader struct {
	rd      io.Reader
	maxBody int
	buf     []byte
	r, w    int
	small   int // frames in a row that fitted initialBuf (for shrinking)
	err     error
}

// NewReader returns a Reader reading from r that rejects frames whose body
// exceeds maxBody (ErrTooLarge); maxBody <= 0 means DefaultMaxBody. The
// buffer is allocated on the first read.
func NewReader(r io.Reader, maxBody int) *Reader {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	return &Reader{rd: r, maxBody: maxBody}
}

// SetMaxBody changes the largest frame body accepted from now on (e.g. a
// small limit during a handshake, the link's limit after it).
func (r *Reader) SetMaxBody(maxBody int) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	r.maxBody = maxBody
}

// Buffered returns the number of bytes read from the stream but not yet
// returned as frames.
func (r *Reader) Buffered() int { return r.w - r.r }

// ReadFrame reads the next frame and returns its header and body. The body
// aliases the Reader's buffer and is valid until the next call.
//
// Errors: io.EOF when the stream ends cleanly between frames,
// io.ErrUnexpectedEOF when it ends inside a frame, the ParseHeader errors
// (ErrUnknownType, ErrTooLarge, ErrMalformed), or the stream's error.
func (r *Reader) ReadFrame() (Header, []byte, error) {
	if r.err != nil {
		return Header{}, nil, r.err
	}
	if r.r == r.w {
		r.r, r.w = 0, 0 // nothing pending: reuse the buffer from the start
		if len(r.buf) > shrinkAbove && r.small >= shrinkAfter {
			r.buf = nil
		}
	}
	if err := r.fill(HeaderSize); err != nil {
		return r.fail(err)
	}
	h, err := ParseHeader(r.buf[r.r:r.w], r.maxBody)
	if err != nil {
		return r.fail(err)
	}
	n := HeaderSize + h.BodyLen
	if err := r.fill(n); err != nil {
		return r.fail(err)
	}
	body := r.buf[r.r+HeaderSize : r.r+n : r.r+n]
	r.r += n
	if n <= initialBuf {
		r.small++
	} else {
		r.small = 0
	}
	return h, body, nil
}

func (r *Reader) fail(err error) (Header, []byte, error) {
	r.err = err
	return Header{}, nil, err
}

// fill makes buf[r:w] hold at least need bytes. need is at most
// HeaderSize+maxBody (the header was checked).
func (r *Reader) fill(need int) error {
	if r.w-r.r >= need {
		return nil
	}
	if len(r.buf)-r.r < need {
		if need <= len(r.buf) {
			// Enough room overall: move the pending bytes to the front.
			r.w = copy(r.buf, r.buf[r.r:r.w])
			r.r = 0
		} else {
			size := max(initialBuf, 2*len(r.buf))
			size = min(size, HeaderSize+r.maxBody)
			size = max(size, need)
			nb := make([]byte, size)
			r.w = copy(nb, r.buf[r.r:r.w])
			r.r = 0
			r.buf = nb
		}
	}
	for empty := 0; r.w-r.r < need; {
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		if r.w-r.r >= need {
			return nil // keep any error for the next read
		}
		if err != nil {
			if err == io.EOF && r.w > r.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if n == 0 {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
	return nil
}
