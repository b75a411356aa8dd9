package cli

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// flagSet wraps flag.FlagSet so every flag also reads WSGATE_<NAME> from the
// environment (dashes become underscores); a flag given on the command line
// wins over the environment, which wins over the default.
type flagSet struct {
	*flag.FlagSet
	envErrs []error
}

func newFlagSet(name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &flagSet{FlagSet: fs}
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "WSGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envOr returns the parsed value of the flag's environment variable, or def
// when it is unset; a bad value is kept for parse to report.
func envOr[T any](f *flagSet, name string, def T, parse func(string) (T, error), want string) T {
	v, ok := os.LookupEnv(envName(name))
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: want %s", envName(name), v, want))
		return def
	}
	return x
}

func help(name, usage string) string { return usage + " (env " + envName(name) + ")" }

func (f *flagSet) String(name, def, usage string) *string {
	return f.FlagSet.String(name, envOr(f, name, def, func(s string) (string, error) { return s, nil }, ""), help(name, usage))
}

func (f *flagSet) Int(name string, def int, usage string) *int {
	return f.FlagSet.Int(name, envOr(f, name, def, strconv.Atoi, "a number"), help(name, usage))
}

func (f *flagSet) Bool(name string, def bool, usage string) *bool {
	return f.FlagSet.Bool(name, envOr(f, name, def, strconv.ParseBool, "true or false"), help(name, usage))
}

func (f *flagSet) Duration(name string, def time.Duration, usage string) *time.Duration {
	return f.FlagSet.Duration(name, envOr(f, name, def, time.ParseDuration, "a duration like 5s"), help(name, usage))
}

func (f *flagSet) Float(name string, def float64, usage string) *float64 {
	return f.FlagSet.Float64(name, envOr(f, name, def, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }, "a number"), help(name, usage))
}

// Bytes is a byte-size flag: a plain number or one with a KiB, MiB, GiB
// (or K, M, G) suffix, e.g. 512MiB.
func (f *flagSet) Bytes(name string, def int64, usage string) *int64 {
	v := byteSize(envOr(f, name, def, parseBytes, "a size like 512MiB"))
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

// list is a repeatable flag; WSGATE_<NAME> holds a space-separated list.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func (f *flagSet) List(name, usage string) *list {
	l := new(list)
	if v, ok := os.LookupEnv(envName(name)); ok && v != "" {
		*l = strings.Fields(v)
	}
	f.FlagSet.Var(l, name, usage+" (repeatable; env "+envName(name)+", space-separated)")
	return l
}

// parse parses args and reports environment errors first.
func (f *flagSet) parse(args []string) error {
	if len(f.envErrs) > 0 {
		return usageError{f.envErrs[0]}
	}
	if err := f.FlagSet.Parse(args); err != nil {
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
