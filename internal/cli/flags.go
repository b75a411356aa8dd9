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

func (f *flagSet) env(name string) (string, bool) {
	return os.LookupEnv(envName(name))
}

func (f *flagSet) String(name, def, usage string) *string {
	if v, ok := f.env(name); ok {
		def = v
	}
	return f.FlagSet.String(name, def, usage+" (env "+envName(name)+")")
}

func (f *flagSet) Int(name string, def int, usage string) *int {
	if v, ok := f.env(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: not a number", envName(name), v))
		}
		def = n
	}
	return f.FlagSet.Int(name, def, usage+" (env "+envName(name)+")")
}

func (f *flagSet) Bool(name string, def bool, usage string) *bool {
	if v, ok := f.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: not true or false", envName(name), v))
		}
		def = b
	}
	return f.FlagSet.Bool(name, def, usage+" (env "+envName(name)+")")
}

func (f *flagSet) Duration(name string, def time.Duration, usage string) *time.Duration {
	if v, ok := f.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: not a duration like 5s", envName(name), v))
		}
		def = d
	}
	return f.FlagSet.Duration(name, def, usage+" (env "+envName(name)+")")
}

// list is a repeatable flag; WSGATE_<NAME> holds a space-separated list.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func (f *flagSet) List(name, usage string) *list {
	l := new(list)
	if v, ok := f.env(name); ok && v != "" {
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
