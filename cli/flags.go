package cli

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
)

// flagSet wraps flag.FlagSet for github.com/peterbourgon/ff/v3, which
// gives every flag its environment variable WSGATE_<NAME> (dashes become
// underscores) and reads --config FILE. Precedence: the command line, then
// the environment, then the config file, then the default; a repeatable
// flag takes all its values from the first of those that has any (lists
// never merge).
type flagSet struct {
	*flag.FlagSet
}

func newFlagSet(name string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs.String("config", "", "file of flag values, one `name value` per line (# comments); the command line and the environment win over it")
	return fs
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "WSGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func help(name, usage string) string { return usage + " (env " + envName(name) + ")" }

func (f *flagSet) String(name, def, usage string) *string {
	return f.FlagSet.String(name, def, help(name, usage))
}

func (f *flagSet) Int(name string, def int, usage string) *int {
	return f.FlagSet.Int(name, def, help(name, usage))
}

func (f *flagSet) Bool(name string, def bool, usage string) *bool {
	return f.FlagSet.Bool(name, def, help(name, usage))
}

func (f *flagSet) Duration(name string, def time.Duration, usage string) *time.Duration {
	return f.FlagSet.Duration(name, def, help(name, usage))
}

func (f *flagSet) Float(name string, def float64, usage string) *float64 {
	return f.FlagSet.Float64(name, def, help(name, usage))
}

// Bytes is a byte-size flag: a plain number or one with a KiB, MiB, GiB
// (or K, M, G) suffix, e.g. 512MiB.
func (f *flagSet) Bytes(name string, def int64, usage string) *int64 {
	v := byteSize(def)
	f.FlagSet.Var(&v, name, help(name, usage))
	return (*int64)(&v)
}

type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Set(s string) error {
	v, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

// parseBytes reads "123", "64KiB", "512MiB", "2GiB" (K, M, G alike).
func parseBytes(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q: want a size like 512MiB", s)
	}
	return n * mult, nil
}

// list is a repeatable flag. Each value may hold several, separated by
// spaces: that is how WSGATE_<NAME> lists them.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	*l = append(*l, strings.Fields(v)...)
	return nil
}

func (f *flagSet) List(name, usage string) *list {
	l := new(list)
	f.FlagSet.Var(l, name, usage+" (repeatable; env "+envName(name)+", space-separated)")
	return l
}

// parse parses args, then the environment, then --config.
func (f *flagSet) parse(args []string) error {
	if err := ff.Parse(f.FlagSet, args, ff.WithEnvVarPrefix("WSGATE"),
		ff.WithConfigFileFlag("config"), ff.WithConfigFileParser(ff.PlainParser)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if f.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	return nil
}

// usageError is a command-line mistake (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }
