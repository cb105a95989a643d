package admin

import (
	"testing"
	"testing/fstest"
)

func TestLoadAssets(t *testing.T) {
	got := loadAssets(fstest.MapFS{
		"a/x.css":     {Data: []byte("css")},
		"a/LICENSE":   {Data: []byte("text")},
		"a/sub/y.js":  {Data: []byte("js")},
		"elsewhere.z": {Data: []byte("no")},
	}, "a")
	if len(got) != 2 {
		t.Fatalf("loaded %+v, want the two files of a/ (not the subdirectory)", got)
	}
	want := map[string]string{"x.css": "text/css; charset=utf-8", "LICENSE": "application/octet-stream"}
	for _, a := range got {
		if want[a.name] != a.ctype {
			t.Errorf("%s: type %q, want %q", a.name, a.ctype, want[a.name])
		}
	}
	if n := len(loadAssets(assets, "assets")); n != 2 {
		t.Errorf("%d embedded assets, want admin.css and admin.js", n)
	}
}
