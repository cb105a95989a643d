package faulttest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// dropper is a TCP proxy that loses the reply to one write: once armed,
// the first request chunk starting with one of the write commands is
// forwarded to the server, and the server's reply is not forwarded: the
// client's connection is reset instead. toxiproxy's toxics cannot tell a
// read from a write; Memcached's reservation is a read ("gets") then a
// write ("cas"/"add"), and only the write's reply must be lost.
type dropper struct {
	Addr     string
	upstream string
	writes   [][]byte
	ln       net.Listener
	armed    atomic.Bool
	lost     atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func newDropper(t testing.TB, upstream string, writes ...string) *dropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dropper{Addr: ln.Addr().String(), upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}}
	for _, w := range writes {
		d.writes = append(d.writes, []byte(w))
	}
	d.wg.Add(1)
	go d.accept()
	t.Cleanup(d.close)
	return d
}

func (d *dropper) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", d.upstream)
		if err != nil {
			c.Close()
			continue
		}
		d.mu.Lock()
		d.conns[c], d.conns[up] = struct{}{}, struct{}{}
		d.mu.Unlock()
		var lose atomic.Bool
		d.wg.Add(2)
		go func() { // client -> server
			defer d.wg.Done()
			defer up.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if d.isWrite(buf[:n]) && d.armed.CompareAndSwap(true, false) {
						lose.Store(true)
					}
					if _, werr := up.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // server -> client
			defer d.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && lose.Load() {
					d.lost.Add(1)
					if tc, ok := c.(*net.TCPConn); ok {
						_ = tc.SetLinger(0) // RST
					}
					up.Close()
					return
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					if err != io.EOF {
						return
					}
					return
				}
			}
		}()
	}
}

func (d *dropper) isWrite(chunk []byte) bool {
	for _, w := range d.writes {
		if bytes.HasPrefix(chunk, w) {
			return true
		}
	}
	return false
}

func (d *dropper) close() {
	d.ln.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// blackHole is a server that accepts connections and reads forever, never
// answering.
type blackHole struct {
	Addr string
	ln   net.Listener
	mu   sync.Mutex
	cs   []net.Conn
	wg   sync.WaitGroup
}

func newBlackHole(t testing.TB) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{Addr: ln.Addr().String(), ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs = append(b.cs, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() { defer b.wg.Done(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.cs {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}
