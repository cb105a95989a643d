package memcached

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/bradfitz/gomemcache/memcache"
)

// Dead pooled connections. gomemcache keeps up to MaxIdleConns idle
// connections per server and hands them out again without checking them.
// When a server restarts, every pooled connection to it is dead (the old
// process closed it), and each would fail one request before it is thrown
// away: with 64 idle connections and one login a second, about a minute of
// errors. So the first error that shows a dead connection (end of file,
// reset, broken pipe: the server closed it, not a timeout and not a refused
// dial, which involve no pooled connection) drops every idle connection of
// the client (Client.Close: the client stays usable; idle connections to
// the other servers of a pool are dialled again, in-use ones are left
// alone), and a read (gets) is retried once, on a fresh connection. Writes
// are never resent: a write whose connection died may have been applied.

// deadConn reports whether err shows that the connection it was sent on was
// closed by the other end.
func deadConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed)
}

// dead drops the client's idle connections when err shows a dead one, and
// reports whether it did.
func (s *Store) dead(err error) bool {
	if err == nil || !deadConn(err) {
		return false
	}
	s.connDrops.Add(1)
	_ = s.c.Close()
	if s.logLimited(&s.lastConnLog) {
		s.log.Warn("memcached: a pooled connection was closed by the server (restarted?): dropped every idle connection; reads are retried once on a fresh connection, writes fail",
			"err", err)
	}
	return true
}

// get is Client.Get, retried once on a fresh connection when the first
// attempt met a dead one (and ctx has not ended).
func (s *Store) get(ctx context.Context, key string) (*memcache.Item, error) {
	it, err := s.c.Get(key)
	if s.dead(err) && ctx.Err() == nil {
		it, err = s.c.Get(key)
		s.dead(err)
	}
	return it, err
}

// getMany is Client.GetMulti, retried like get.
func (s *Store) getMany(ctx context.Context, keys []string) (map[string]*memcache.Item, error) {
	m, err := s.c.GetMulti(keys)
	if s.dead(err) && ctx.Err() == nil {
		m, err = s.c.GetMulti(keys)
		s.dead(err)
	}
	return m, err
}

// wrote returns a write's error, having dropped the idle connections when
// it shows a dead one. The write is not retried.
func (s *Store) wrote(err error) error {
	s.dead(err)
	return err
}
