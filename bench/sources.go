package bench

// ConnsPerSource is how many connections the load generator puts on one
// 127.0.0.x source address.
//
// Linux gives connect() ports of one parity first (since 4.2, commit
// 07f4c90062f8 "tcp/dccp: try to not exhaust ip_local_port_range in
// connect()"; bind() gets the other). It starts where its last search for
// that source and destination ended, and it takes a port of the other
// parity only after it has walked every used port of the first, checking
// the established table for each (__inet_hash_connect,
// __inet_check_established). The default range, 32768-60999, has 14,116
// ports of each parity per source and destination. Near that count every
// connect walks them all. At 928,000 connections over 66 sources (14,000
// each), __inet_check_established took 32% of the machine and new
// connections all but stopped (docs/BENCHMARKS.md, run L). At 7,000 a
// source keeps half of its first parity free, so the walk stays short.
const ConnsPerSource = 7000

// MaxSources bounds the source addresses: 127.0.0.1 to 127.0.0.250.
const MaxSources = 250

// minSources is the fewest source addresses the load generator uses.
const minSources = 16

// SourcesFor returns how many source addresses conns connections are
// spread over: one per ConnsPerSource, plus minSources, at most MaxSources.
func SourcesFor(conns int) int {
	return min(conns/ConnsPerSource+minSources, MaxSources)
}
