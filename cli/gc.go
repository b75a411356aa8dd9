package cli

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target (as GOGC) of the
// long-running commands (gateway, backend, dev) unless --gc-percent or the
// GOGC environment variable says otherwise. Go's own default, 100, lets the
// heap grow to twice what is live before a collection; a gateway's live
// heap is mostly idle clients, and after a connect storm its resident
// memory stays near that peak. At 50, a gateway holding 15,000 clients kept
// 782 bytes per client instead of 900, and the CPU per handshake of 3,500
// more clients coming and going stayed within the run-to-run spread
// (docs/BENCHMARKS.md, "What a lower GOGC costs").
const DefaultGCPercent = 50

// gcFlag is --gc-percent.
type gcFlag struct {
	fs      *flagSet
	percent *int
}

func addGCFlag(fs *flagSet) *gcFlag {
	return &gcFlag{fs: fs, percent: fs.Int("gc-percent", DefaultGCPercent,
		"garbage collector target, as GOGC: the heap may grow by this percentage of live memory before a collection (lower: less memory per idle client, a little more CPU); GOGC in the environment, when set, replaces this default")}
}

// apply sets the collector's target, after parsing: the flag when it was
// given (command line, environment or config file), else GOGC when the
// environment has it (the runtime read it at start), else the default.
func (g *gcFlag) apply() error {
	given := false
	g.fs.Visit(func(f *flag.Flag) { given = given || f.Name == "gc-percent" })
	if !given && os.Getenv("GOGC") != "" {
		return nil
	}
	if *g.percent < 1 || *g.percent > 10000 {
		return usageError{fmt.Errorf("--gc-percent %d: want 1..10000", *g.percent)}
	}
	debug.SetGCPercent(*g.percent)
	return nil
}
