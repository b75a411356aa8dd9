package bench

import (
	"time"

	"github.com/wsgate/wsgate/internal/wsframe"
)

// stampLen is the size of the send timestamp at the start of every echo
// message: 16 hex digits of Engine.Now, so the frame stays valid text.
const stampLen = 16

const hexDigits = "0123456789abcdef"

// putStamp writes t as 16 hex digits into b[:16].
func putStamp(b []byte, t int64) {
	u := uint64(t)
	for i := stampLen - 1; i >= 0; i-- {
		b[i] = hexDigits[u&0xF]
		u >>= 4
	}
}

// stamp reads the timestamp putStamp wrote; ok is false for anything else.
func stamp(b []byte) (t int64, ok bool) {
	if len(b) < stampLen {
		return 0, false
	}
	var u uint64
	for _, c := range b[:stampLen] {
		switch {
		case c >= '0' && c <= '9':
			u = u<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			u = u<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return int64(u), true
}

// sendEcho sends one timestamped message on c.
func (r *runner) sendEcho(c *Conn) {
	b := r.sendBuf[c.Loop()]
	putStamp(b, r.e.Now())
	c.Send(wsframe.OpText, b)
}

// startEcho fills c's window (window mode only; rate mode sends on ticks).
func (r *runner) startEcho(c *Conn) {
	if r.cfg.Rate > 0 {
		return
	}
	for range r.cfg.Window {
		r.sendEcho(c)
	}
}

func (r *runner) onEcho(c *Conn, _ wsframe.OpCode, p []byte) {
	t, ok := stamp(p)
	if !ok {
		return
	}
	now := r.e.Now()
	if r.recording.Load() {
		recordNanos(r.lat[c.Loop()], now-t)
		r.received.Add(1)
	}
	if r.sending.Load() && r.cfg.Rate == 0 {
		r.sendEcho(c)
	}
}

func (r *runner) echo() error {
	r.res.Size, r.res.Window, r.res.Rate = r.cfg.Size, r.cfg.Window, r.cfg.Rate
	if err := r.connectAll(); err != nil {
		return err
	}
	perLoop := r.prepareSend()
	r.mode.Store(modeEcho)
	r.sending.Store(true)
	if r.cfg.Rate > 0 {
		r.startRate(perLoop)
	} else {
		r.e.ExecAll(func(i int) {
			for _, c := range perLoop[i] {
				r.startEcho(c)
			}
		})
	}
	stop := make(chan struct{})
	go r.progress("echo", stop)
	defer close(stop)
	settle(r.ctx, r.cfg.Warmup)
	u0, err := r.cfg.Probe.Sample(r.ctx, false)
	if err != nil {
		return err
	}
	b0 := r.backendCPU()
	t0 := time.Now()
	r.recording.Store(true)
	settle(r.ctx, r.cfg.Duration)
	r.recording.Store(false)
	secs := time.Since(t0).Seconds()
	b1 := r.backendCPU()
	u1, err := r.cfg.Probe.Sample(r.ctx, false)
	r.sending.Store(false)
	r.e.SetTick(nil)
	if err != nil {
		return err
	}
	n := r.received.Load()
	r.res.Messages = n
	r.res.Throughput = float64(n) / secs
	r.res.Latency = summarize(r.lat...)
	r.res.Drops = r.nDrop.Load()
	r.res.CPUSeconds, r.res.WindowSeconds = u1.CPU-u0.CPU, secs
	if n > 0 && u0.CPU >= 0 {
		r.res.CPUPerMillion = (u1.CPU - u0.CPU) / (float64(n) / 1e6)
	}
	if n > 0 && b0 >= 0 && b1 >= 0 {
		r.res.BackendCPUPerMillion = (b1 - b0) / (float64(n) / 1e6)
	}
	return r.ctx.Err()
}

// prepareSend makes the loops' message buffers and returns the open
// connections per loop, for rate mode's round robin.
func (r *runner) prepareSend() [][]*Conn {
	r.sendBuf = make([][]byte, r.e.Loops())
	for i := range r.sendBuf {
		b := make([]byte, r.cfg.Size)
		for j := range b {
			b[j] = 'x'
		}
		r.sendBuf[i] = b
	}
	perLoop := make([][]*Conn, r.e.Loops())
	r.e.ExecAll(func(i int) {
		for _, c := range r.e.loops[i].conns {
			if c.Open() {
				perLoop[i] = append(perLoop[i], c)
			}
		}
	})
	return perLoop
}

// backendCPU is the backends' CPU seconds, -1 if unknown.
func (r *runner) backendCPU() float64 {
	if r.cfg.Backends == nil {
		return -1
	}
	u, err := r.cfg.Backends.Sample(r.ctx, false)
	if err != nil {
		return -1
	}
	return u.CPU
}

// startRate makes every loop send Rate messages/s per connection, spread
// evenly: each tick sends to as many connections (round robin) as are due.
func (r *runner) startRate(perLoop [][]*Conn) {
	type state struct {
		start int64
		sent  int64
		next  int
	}
	st := make([]state, len(perLoop))
	now := r.e.Now()
	for i := range st {
		st[i].start = now
	}
	r.e.SetTick(func(i int, now int64) {
		s, conns := &st[i], perLoop[i]
		if len(conns) == 0 || !r.sending.Load() {
			return
		}
		due := int64(float64(now-s.start)/1e9*r.cfg.Rate*float64(len(conns))) - s.sent
		for ; due > 0; due-- {
			c := conns[s.next]
			s.next = (s.next + 1) % len(conns)
			s.sent++
			r.sendEcho(c)
		}
	})
}
