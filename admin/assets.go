package admin

import (
	"bytes"
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// asset is one embedded file, served at /assets/<name> exactly.
type asset struct {
	name  string
	ctype string
	data  []byte
}

// loadAssets reads the files of the directory dir of fsys (not its
// subdirectories).
func loadAssets(fsys fs.FS, dir string) []asset {
	var out []asset
	entries, _ := fs.ReadDir(fsys, dir)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, _ := fs.ReadFile(fsys, dir+"/"+e.Name())
		ctype := mime.TypeByExtension(path.Ext(e.Name()))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		out = append(out, asset{name: e.Name(), ctype: ctype, data: data})
	}
	return out
}

// handleAssets registers one exact route per embedded file. Exact routes
// (no "/assets/" subtree, no http.FileServer) mean that nothing here ever
// redirects: "/assets", "/assets/" and "/assets/admin.css/" are 404s, not
// redirects that would lose the mount prefix, and no directory is listed.
func (h *handler) handleAssets(mux *http.ServeMux) {
	for _, a := range loadAssets(assets, "assets") {
		mux.HandleFunc("/assets/"+a.name, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: use GET")
				return
			}
			w.Header().Set("Content-Type", a.ctype)
			http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
		})
	}
}

// cleanPath reports whether p is in the canonical form http.ServeMux
// would redirect to (no "//", no "." or ".." segment): the admin answers
// 404 to any other path instead of letting the mux redirect to the
// cleaned path, which, under http.StripPrefix, would lose the mount prefix.
func cleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// mountRedirect answers a request for the mount point without its
// trailing slash (StripPrefix("/x") and a request for "/x": the stripped
// path is empty). Relative links on the page would resolve against the
// parent of the mount, so it redirects to the mount with the slash, by a
// relative reference ("./x/") that never leaves the mount. It reports
// false when the request does not need it (the mount with its slash, or a
// request whose original URI is unknown), and the index is served.
func mountRedirect(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != "" || r.RequestURI == "" {
		return false
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || strings.HasSuffix(u.Path, "/") {
		return false
	}
	last := path.Base(u.EscapedPath())
	if last == "/" || last == "." || last == "" {
		return false
	}
	loc := "./" + last + "/"
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusSeeOther)
	return true
}
