package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
)

// unavailablePrefixes are server replies that mean "this server cannot
// serve the command now": a replica, a server loading its data, a cluster or
// master down, a slot moving, the client limit, a busy script, no memory.
var unavailablePrefixes = []string{
	"READONLY ", "LOADING ", "CLUSTERDOWN ", "MASTERDOWN ", "TRYAGAIN ",
	"MOVED ", "ASK ", "NOREPLICAS ", "BUSY ", "OOM ", "ERR max number of clients",
}

// wrap maps a go-redis error to the backend contract:
//   - cancellation stays context.Canceled (not ErrUnavailable);
//   - a deadline is ErrUnavailable wrapping context.DeadlineExceeded too;
//   - network errors, a lost reply, a closed pool and the replies in
//     unavailablePrefixes are ErrUnavailable;
//   - any other server reply (a script error, WRONGTYPE) is returned as is.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if op != "" {
		op += ": "
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("defender/redis: %s%w", op, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("defender/redis: %s%w: %w", op, backend.ErrUnavailable, err)
	case isUnavailable(err):
		return fmt.Errorf("defender/redis: %s%w: %w", op, backend.ErrUnavailable, err)
	default:
		return fmt.Errorf("defender/redis: %s%w", op, err)
	}
}

func isUnavailable(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		// Not a server reply: the network, a timeout, a closed client, or a
		// non-idempotent script whose reply was lost.
		return true
	}
	msg := re.Error()
	for _, p := range unavailablePrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
