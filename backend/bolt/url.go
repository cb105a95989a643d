package bolt

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/go-defender/defender/backend"
)

func init() {
	backend.Register("bolt", openURL)
}

// openURL opens a bolt URL. Everything after "bolt://" is the file path:
// "bolt:///var/lib/defender.db" is absolute, "bolt://defender.db" and
// "bolt://data/defender.db" are relative to the working directory (as is
// the opaque form "bolt:data/defender.db"). Query parameters: timeout
// (a Go duration, Options.Timeout), nosync (a bool, Options.NoSync),
// sweep_interval (a duration, Options.SweepInterval), max_batch_delay (a
// duration) and max_batch_size (an integer); any other is an error.
func openURL(_ context.Context, u *url.URL) (backend.Backend, error) {
	if u.User != nil {
		return nil, backend.Errorf(u, "bolt: the URL takes no user or password")
	}
	path := u.Opaque
	if path == "" {
		path = u.Host + u.Path
	}
	if path == "" {
		return nil, backend.Errorf(u, "bolt: the URL names no file (bolt:///abs/path.db or bolt://relative.db)")
	}
	p := backend.NewParams(u)
	var o Options
	dur := func(name string, dst *time.Duration) error {
		if v, ok := p.Get(name); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return backend.Errorf(u, "bolt: %s %q is not a duration", name, v)
			}
			*dst = d
		}
		return nil
	}
	for name, dst := range map[string]*time.Duration{
		"timeout":         &o.Timeout,
		"sweep_interval":  &o.SweepInterval,
		"max_batch_delay": &o.MaxBatchDelay,
	} {
		if err := dur(name, dst); err != nil {
			return nil, err
		}
	}
	if v, ok := p.Get("nosync"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, backend.Errorf(u, "bolt: nosync %q is not a bool", v)
		}
		o.NoSync = b
	}
	if v, ok := p.Get("max_batch_size"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, backend.Errorf(u, "bolt: max_batch_size %q is not a positive integer", v)
		}
		o.MaxBatchSize = n
	}
	if o.MaxBatchDelay < 0 {
		return nil, backend.Errorf(u, "bolt: max_batch_delay %v is negative", o.MaxBatchDelay)
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	return Open(path, &o)
}
