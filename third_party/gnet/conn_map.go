// Copyright (c) 2023 The Gnet Authors. All rights reserved.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//      http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build (darwin || dragonfly || freebsd || linux || netbsd || openbsd) && !gc_opt

package gnet

import (
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2/internal/gfd"
)

// wsgate patch: connections are found by descriptor in one table per
// process, shared by every event loop, instead of a map[int]*conn per
// loop. An idle client costs 8 bytes there (descriptors are dense, the
// table grows in chunks of 4,096) where the map held a 16-byte slot at
// 44-87% load, and the lookup on every event is two loads instead of a
// hash. Descriptors are unique in a process, so an entry is the conn that
// holds its descriptor now; a loop takes it only if that conn is its own:
// an event for a descriptor that was closed and reused by another loop
// finds the other loop's conn and is treated as stale, as a missing entry
// was before.

const fdChunkBits = 12

// fdChunk holds the conns of 4,096 consecutive descriptors.
type fdChunk [1 << fdChunkBits]atomic.Pointer[conn]

// fdTable is the process's descriptor -> conn table. Chunks are never
// freed or moved: a reader holding an older chunk list still finds every
// chunk it could need, since a descriptor's chunk exists before the
// descriptor is stored, on the goroutine that stores it.
var fdTable struct {
	mu     sync.Mutex                 // serializes growth
	chunks atomic.Pointer[[]*fdChunk] // copied on growth
}

// fdSlot returns fd's entry in fdTable, making its chunk when grow is set;
// nil when fd is negative or (without grow) its chunk does not exist.
func fdSlot(fd int, grow bool) *atomic.Pointer[conn] {
	if fd < 0 {
		return nil
	}
	i, j := fd>>fdChunkBits, fd&(1<<fdChunkBits-1)
	if p := fdTable.chunks.Load(); p != nil && i < len(*p) && (*p)[i] != nil {
		return &(*p)[i][j]
	}
	if !grow {
		return nil
	}
	fdTable.mu.Lock()
	defer fdTable.mu.Unlock()
	var cur []*fdChunk
	if p := fdTable.chunks.Load(); p != nil {
		cur = *p
	}
	if i >= len(cur) || cur[i] == nil {
		n := len(cur)
		if i >= n {
			n = i + 1
		}
		next := make([]*fdChunk, n)
		copy(next, cur)
		next[i] = new(fdChunk)
		fdTable.chunks.Store(&next)
		cur = next
	}
	return &cur[i][j]
}

type connMatrix struct {
	connCount int32
	owner     *eventloop // the loop these conns belong to; set by the first addConn
}

func (cm *connMatrix) init() {}

// iterate calls f for each of the loop's conns (a walk over the whole
// table: shutdown only).
func (cm *connMatrix) iterate(f func(*conn) bool) {
	if cm.owner == nil {
		return
	}
	p := fdTable.chunks.Load()
	if p == nil {
		return
	}
	for _, ch := range *p {
		if ch == nil {
			continue
		}
		for k := range ch {
			if c := ch[k].Load(); c != nil && c.loop == cm.owner {
				if !f(c) {
					return
				}
			}
		}
	}
}

func (cm *connMatrix) incCount(_ int, delta int32) {
	atomic.AddInt32(&cm.connCount, delta)
}

func (cm *connMatrix) loadCount() (n int32) {
	return atomic.LoadInt32(&cm.connCount)
}

func (cm *connMatrix) addConn(c *conn, index int) {
	c.gfd = gfd.NewGFD(c.fd, index, 0, 0)
	if cm.owner == nil {
		cm.owner = c.loop // always the same: addConn runs on the loop that owns cm
	}
	fdSlot(c.fd, true).Store(c)
	cm.incCount(0, 1)
}

func (cm *connMatrix) delConn(c *conn) {
	if s := fdSlot(c.fd, false); s != nil && s.CompareAndSwap(c, nil) {
		cm.incCount(0, -1)
	}
}

// getConn returns the loop's conn on fd, or nil.
func (cm *connMatrix) getConn(fd int) *conn {
	s := fdSlot(fd, false)
	if s == nil {
		return nil
	}
	if c := s.Load(); c != nil && c.loop == cm.owner {
		return c
	}
	return nil
}
