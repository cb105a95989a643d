package memory

import (
	"context"
	"net/url"
	"strconv"

	"github.com/go-defender/defender/backend"
)

func init() {
	backend.Register("memory", openURL)
}

// openURL opens "memory://" with the optional query parameter max_keys=N
// (Options.MaxKeys). The URL takes no host, path or other parameter.
func openURL(_ context.Context, u *url.URL) (backend.Backend, error) {
	if u.Host != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" || u.User != nil {
		return nil, backend.Errorf(u, "memory: the URL takes no host, user or path (use memory:// or memory://?max_keys=N)")
	}
	p := backend.NewParams(u)
	var o Options
	if v, ok := p.Get("max_keys"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, backend.Errorf(u, "memory: max_keys %q is not a positive integer", v)
		}
		o.MaxKeys = n
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	return New(&o)
}
