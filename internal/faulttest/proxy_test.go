package faulttest

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// fault is an in-process toxiproxy proxy between defender and one server.
type fault struct {
	t     testing.TB
	p     *toxiproxy.Proxy
	Addr  string // where clients connect: 127.0.0.1:port, stable across cut/restore
	Up    string // the server's address
	nextN atomic.Int64
}

var apiServer = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())

var proxySeq atomic.Int64

// newFault starts a proxy to upstream on a free loopback port; it is
// stopped when the test ends.
func newFault(t testing.TB, upstream string) *fault {
	t.Helper()
	name := fmt.Sprintf("p%d", proxySeq.Add(1))
	p := toxiproxy.NewProxy(apiServer, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: start %s -> %s: %v", name, upstream, err)
	}
	f := &fault{t: t, p: p, Addr: p.Listen, Up: upstream}
	t.Cleanup(p.Stop)
	return f
}

// cut disables the proxy: every proxied connection is closed and new ones
// are refused until restore.
func (f *fault) cut() { f.p.Stop() }

// restore enables the proxy again on the same address.
func (f *fault) restore() {
	f.t.Helper()
	if err := f.p.Start(); err != nil {
		f.t.Fatalf("toxiproxy: restart: %v", err)
	}
}

// toxic adds a toxic of typ on stream ("upstream": client to server,
// "downstream": server to client) with the given JSON attributes, and
// returns its name for clear.
func (f *fault) toxic(typ, stream, attrs string) string {
	f.t.Helper()
	name := fmt.Sprintf("%s_%s_%d", typ, stream, f.nextN.Add(1))
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := f.p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		f.t.Fatalf("toxiproxy: add %s: %v", js, err)
	}
	return name
}

// clear removes every toxic.
func (f *fault) clear() {
	f.p.Toxics.ResetToxics(ctxBG)
}

// retarget points the proxy at another server (a replacement for one that
// died), on the same address.
func (f *fault) retarget(upstream string) {
	f.t.Helper()
	if err := f.p.Update(&toxiproxy.Proxy{Listen: f.Addr, Upstream: upstream, Enabled: true}); err != nil {
		f.t.Fatalf("toxiproxy: retarget to %s: %v", upstream, err)
	}
	f.Up = upstream
}
