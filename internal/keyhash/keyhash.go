// Package keyhash hashes routing keys (user ids) for the in-memory indexes
// of sessions by key: a gateway loop's and a backend node's. A map keyed by
// the 64-bit hash holds 8 bytes less per slot than one keyed by the string
// (whose bytes the session holds anyway), which every idle client pays.
//
// Two keys may share a hash, so an index keeps a list per hash and every
// lookup compares the keys. The seed is random per process, so a client
// cannot choose keys that collide on purpose (hash flooding).
package keyhash

import "hash/maphash"

var seed = maphash.MakeSeed()

// Of returns key's hash, the same for the life of the process. Safe for
// concurrent use.
func Of(key string) uint64 { return maphash.String(seed, key) }
