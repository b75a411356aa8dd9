package wsframe

import (
	"encoding/binary"
	"math/bits"
)

// MaskBytes XORs b in place with the masking key mask, starting at key
// offset pos, and returns the key offset for the byte after b,
// (pos+len(b)) % 4. A payload that arrives in pieces is unmasked by
// threading the offset through:
//
//	pos := 0
//	for each piece p { pos = MaskBytes(p, h.Mask, pos) }
//
// Masking and unmasking are the same operation. Only pos&3 is used, so any
// pos is accepted.
//
// RFC 6455 5.3: "Octet i of the transformed data ("transformed-octet-i") is
// the XOR of octet i of the original data ("original-octet-i") with octet at
// index i modulo 4 of the masking key ("masking-key-octet-j"):
//
//	j                   = i MOD 4
//	transformed-octet-i = original-octet-i XOR masking-key-octet-j"
func MaskBytes(b []byte, mask [4]byte, pos int) int {
	pos &= 3
	end := (pos + len(b)) & 3

	// key32 holds the mask rotated so that its byte 0 (little endian) is
	// the key byte for b[0]. Eight-byte words are a multiple of the
	// four-byte key, so the same rotation stays valid across the word loop.
	key32 := bits.RotateLeft32(binary.LittleEndian.Uint32(mask[:]), -8*pos)
	key64 := uint64(key32)<<32 | uint64(key32)

	// Word loop, 32 then 8 bytes at a time. Unaligned little-endian loads
	// and stores compile to single instructions on amd64/arm64, so there
	// is no alignment head loop.
	for len(b) >= 32 {
		v := b[:32]
		binary.LittleEndian.PutUint64(v[0:8], binary.LittleEndian.Uint64(v[0:8])^key64)
		binary.LittleEndian.PutUint64(v[8:16], binary.LittleEndian.Uint64(v[8:16])^key64)
		binary.LittleEndian.PutUint64(v[16:24], binary.LittleEndian.Uint64(v[16:24])^key64)
		binary.LittleEndian.PutUint64(v[24:32], binary.LittleEndian.Uint64(v[24:32])^key64)
		b = b[32:]
	}
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b[:8], binary.LittleEndian.Uint64(b[:8])^key64)
		b = b[8:]
	}

	// Tail: at most 7 bytes, one at a time.
	for i := range b {
		b[i] ^= byte(key32 >> (8 * (uint(i) & 3)))
	}
	return end
}
