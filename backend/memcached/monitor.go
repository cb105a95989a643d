package memcached

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// watchEvictions polls the servers' "stats" every EvictionCheck and logs a
// warning when a server's eviction counter grew (or is not zero at the
// first check): an evicted counter or block reopens the door it guarded.
func (s *Store) watchEvictions() {
	defer s.wg.Done()
	last := make(map[string]int64, len(s.servers))
	check := func() {
		var sum int64
		for _, addr := range s.servers {
			n, err := s.serverEvictions(addr)
			if err != nil {
				s.log.Debug("memcached: eviction check failed", "server", addr, "err", err)
				sum += last[addr]
				continue
			}
			if prev := last[addr]; n > prev {
				s.log.Warn("memcached: the server evicted items; evicted counters and blocks let attackers in again (give defender a dedicated instance with enough memory)",
					"server", addr, "evictions", n, "new", n-prev)
			}
			last[addr] = n
			sum += n
		}
		s.evictions.Store(sum)
	}
	check()
	t := time.NewTicker(s.evictEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			check()
		case <-s.stop:
			return
		}
	}
}

// serverEvictions asks the server at addr for its "evictions" statistic on
// a connection of its own (gomemcache has no stats call).
func (s *Store) serverEvictions(addr string) (int64, error) {
	timeout := s.c.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	network := "tcp"
	if strings.Contains(addr, "/") {
		network = "unix"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	var err error
	if s.c.DialContext != nil {
		c, err = s.c.DialContext(ctx, network, addr)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	n := int64(-1)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			break
		}
		if v, ok := strings.CutPrefix(line, "STAT evictions "); ok {
			if n, err = strconv.ParseInt(v, 10, 64); err != nil {
				return 0, fmt.Errorf("bad evictions statistic %q", v)
			}
		}
	}
	if n < 0 {
		return 0, fmt.Errorf("no evictions statistic")
	}
	return n, nil
}
