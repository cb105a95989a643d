package backend_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

func params(t *testing.T, raw string) *backend.Params {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return backend.NewParams(u)
}

func TestParamsTyped(t *testing.T) {
	p := params(t, "s://u:secret@h/?d=250ms&i=-7&b=TRUE&flag&s=64KiB&s2=10mb&s3=3G&s4=12&s5=2b&dup=1&dup=2")
	if d, err := p.Duration("d", time.Hour); err != nil || d != 250*time.Millisecond {
		t.Errorf("Duration = %v, %v; want 250ms", d, err)
	}
	if n, err := p.Int("i", 0); err != nil || n != -7 {
		t.Errorf("Int = %v, %v; want -7", n, err)
	}
	if b, err := p.Bool("b", false); err != nil || !b {
		t.Errorf("Bool(TRUE) = %v, %v; want true", b, err)
	}
	if b, err := p.Bool("flag", false); err != nil || !b {
		t.Errorf("Bool(?flag) = %v, %v; want true", b, err)
	}
	for name, want := range map[string]int64{"s": 64 << 10, "s2": 10e6, "s3": 3 << 30, "s4": 12, "s5": 2} {
		if n, err := p.Size(name, 0); err != nil || n != want {
			t.Errorf("Size(%s) = %v, %v; want %d", name, n, err, want)
		}
	}
	if n, err := p.Int("dup", 0); err != nil || n != 2 {
		t.Errorf("Int(dup=1&dup=2) = %v, %v; want the last value 2", n, err)
	}
	// Absent: the default, no error.
	if d, err := p.Duration("none", time.Minute); err != nil || d != time.Minute {
		t.Errorf("Duration(absent) = %v, %v; want the default", d, err)
	}
	if n, err := p.Int("none", 3); err != nil || n != 3 {
		t.Errorf("Int(absent) = %v, %v", n, err)
	}
	if b, err := p.Bool("none", true); err != nil || !b {
		t.Errorf("Bool(absent) = %v, %v", b, err)
	}
	if n, err := p.Size("none", 9); err != nil || n != 9 {
		t.Errorf("Size(absent) = %v, %v", n, err)
	}
	if err := p.Done(); err != nil {
		t.Errorf("Done after every parameter was read: %v", err)
	}
}

func TestParamsErrors(t *testing.T) {
	cases := []struct {
		query, name string
		get         func(p *backend.Params, name string) error
	}{
		{"timeout=soon", "timeout", func(p *backend.Params, n string) error { _, err := p.Duration(n, 0); return err }},
		{"timeout=-1s", "timeout", func(p *backend.Params, n string) error { _, err := p.Duration(n, 0); return err }},
		{"max=1.5", "max", func(p *backend.Params, n string) error { _, err := p.Int(n, 0); return err }},
		{"sync=yes", "sync", func(p *backend.Params, n string) error { _, err := p.Bool(n, false); return err }},
		{"cap=lots", "cap", func(p *backend.Params, n string) error { _, err := p.Size(n, 0); return err }},
		{"cap=-1", "cap", func(p *backend.Params, n string) error { _, err := p.Size(n, 0); return err }},
		{"cap=9000000000TiB", "cap", func(p *backend.Params, n string) error { _, err := p.Size(n, 0); return err }},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			p := params(t, "s://u:secret@h/?"+c.query)
			err := c.get(p, c.name)
			if !errors.Is(err, backend.ErrInvalidURL) {
				t.Fatalf("err = %v, want ErrInvalidURL", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "parameter "+c.name+"=") || strings.Contains(msg, "secret") {
				t.Errorf("err = %q, want it to name parameter %s and hide the password", msg, c.name)
			}
		})
	}
}

func TestParamsDone(t *testing.T) {
	p := params(t, "s://h/?b=1&a=2&c=3")
	if v, ok := p.Get("a"); !ok || v != "2" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
	if v, ok := p.Get("a"); ok {
		t.Fatalf("Get(a) twice = %q, %v; want it consumed", v, ok)
	}
	err := p.Done()
	if !errors.Is(err, backend.ErrInvalidURL) || !strings.Contains(err.Error(), "unknown query parameter(s) b, c") {
		t.Fatalf("Done = %v, want the leftovers b, c named", err)
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"", "a", "defender:", strings.Repeat("k", backend.MaxKeyLen)} {
		if err := backend.CheckPrefix(ok); err != nil {
			t.Errorf("CheckPrefix(%q) = %v, want nil", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"a b":                                    "byte 0x20 at 1",
		"caf\u00e9":                              "byte 0xc3 at 3",
		strings.Repeat("k", backend.MaxKeyLen+1): "length 201",
	} {
		err := backend.CheckPrefix(bad)
		if !errors.Is(err, backend.ErrInvalid) || !strings.Contains(err.Error(), "Scan prefix") || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPrefix(%q) = %v, want ErrInvalid naming the Scan prefix and %q", bad, err, want)
		}
	}
}

// immediate is a Backend that reports Immediate.
type immediate struct {
	backend.Backend
	yes bool
}

func (i immediate) Immediate() bool { return i.yes }

func TestIsImmediate(t *testing.T) {
	var _ backend.Immediate = immediate{}
	if !backend.IsImmediate(immediate{yes: true}) {
		t.Error("IsImmediate(true) = false")
	}
	if backend.IsImmediate(immediate{yes: false}) {
		t.Error("IsImmediate(false) = true")
	}
	if backend.IsImmediate(struct{ backend.Backend }{}) {
		t.Error("IsImmediate of a Backend without the method = true")
	}
}
