package docscheck

import (
	"go/ast"
	"go/importer"
	"go/token"
	"go/types"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// knownImports maps the package names the docs use to their import paths:
// a snippet's missing imports are added from here. A name not listed (a
// variable of the example, or a package such as a router) stays undefined,
// which the checker ignores, like every name a fragment takes from
// elsewhere.
var knownImports = map[string]string{
	"defender":    "github.com/go-defender/defender/defender",
	"backend":     "github.com/go-defender/defender/backend",
	"memory":      "github.com/go-defender/defender/backend/memory",
	"bolt":        "github.com/go-defender/defender/backend/bolt",
	"redis":       "github.com/go-defender/defender/backend/redis",
	"memcached":   "github.com/go-defender/defender/backend/memcached",
	"auditlog":    "github.com/go-defender/defender/auditlog",
	"file":        "github.com/go-defender/defender/auditlog/file",
	"mongo":       "github.com/go-defender/defender/auditlog/mongo",
	"admin":       "github.com/go-defender/defender/admin",
	"notify":      "github.com/go-defender/defender/notify",
	"conformance": "github.com/go-defender/defender/conformance",
	"prometheus":  "github.com/go-defender/defender/metrics/prometheus",
	"goredis":     "github.com/redis/go-redis/v9",
	"memcache":    "github.com/bradfitz/gomemcache/memcache",
	"bcrypt":      "golang.org/x/crypto/bcrypt",
	"context":     "context",
	"errors":      "errors",
	"fmt":         "fmt",
	"http":        "net/http",
	"io":          "io",
	"log":         "log",
	"slog":        "log/slog",
	"netip":       "net/netip",
	"os":          "os",
	"smtp":        "net/smtp",
	"strings":     "strings",
	"sync":        "sync",
	"testing":     "testing",
	"time":        "time",
	"json":        "encoding/json",
}

// ignored are the type errors a snippet may have because it is a fragment:
// names defined elsewhere in the program, results not used in the excerpt.
var ignored = regexp.MustCompile(`undefined: |declared and not used|imported and not used|is not used|missing return|redeclared|no new variables`)

var (
	// selectorRE finds the package names a snippet uses (pkg.Name).
	selectorRE = regexp.MustCompile(`\b([a-z][a-z0-9]*)\.[A-Z]`)
	// quotedRE finds the paths of import declarations.
	quotedRE = regexp.MustCompile(`"([^"]+)"`)
)

// typeChecker type-checks snippets against the repository's packages,
// imported from source once.
type typeChecker struct {
	fset *token.FileSet
	imp  types.Importer
}

func newTypeChecker() *typeChecker {
	fset := token.NewFileSet()
	return &typeChecker{fset: fset, imp: importer.ForCompiler(fset, "source", nil)}
}

// check type-checks src as declarations or as statements in a function,
// adding the imports it needs, and returns the first type error that is not
// a fragment's (ignored). It reports skipped for a whole program (package
// clause), which TestGoSnippetsParse parses.
func (tc *typeChecker) check(src string) (skipped bool, err error) {
	src = elisionRE.ReplaceAllString(src, "$1// ...")
	if strings.HasPrefix(strings.TrimSpace(src), "package ") {
		return true, nil // a whole program: parsed by TestGoSnippetsParse
	}
	imports, body := splitImports(src)
	declared := map[string]bool{}
	for _, m := range quotedRE.FindAllStringSubmatch(imports, -1) {
		declared[filepath.Base(m[1])] = true
	}
	var need []string
	for _, m := range selectorRE.FindAllStringSubmatch(body, -1) {
		name := m[1]
		if declared[name] {
			continue
		}
		path, ok := knownImports[name]
		if !ok {
			// A variable of the example (d, mux) or a package the
			// checker does not import (chi): undefined, and ignored.
			continue
		}
		declared[name] = true
		need = append(need, strconv.Quote(path))
		if filepath.Base(path) != name {
			need[len(need)-1] = name + " " + need[len(need)-1]
		}
	}
	sort.Strings(need)
	var extra string
	if len(need) > 0 {
		extra = "\nimport (\n" + strings.Join(need, "\n") + "\n)\n"
	}
	f, perr := parseFragment(tc.fset, src, extra, 0)
	if perr != nil {
		return false, perr
	}
	var first error
	conf := types.Config{Importer: tc.imp, Error: func(e error) {
		if first == nil && !ignored.MatchString(e.Error()) {
			first = e
		}
	}}
	_, _ = conf.Check("p", tc.fset, []*ast.File{f}, nil)
	return false, first
}

// TestGoSnippetsTypeCheck type-checks every Go block of the docs against
// the repository: a snippet that calls a function with the wrong number of
// results or arguments, or a method that does not exist, fails.
func TestGoSnippetsTypeCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("imports the repository from source")
	}
	tc := newTypeChecker()
	checked, skipped := 0, 0
	for _, b := range goBlocks(t) {
		skip, err := tc.check(b.src)
		if skip {
			skipped++
			continue
		}
		checked++
		if err != nil {
			t.Errorf("%s: Go block %d does not type-check: %v\n%s", b.page, b.n, err, b.src)
		}
	}
	t.Logf("%d Go blocks type-checked, %d whole programs only parsed", checked, skipped)
	if checked < 10 {
		t.Fatalf("only %d Go blocks type-checked", checked)
	}
}

// TestTypeCheckerCatches: the docs' old mistake, memory.New used as one
// value, is caught; fragments with names from elsewhere are not errors.
func TestTypeCheckerCatches(t *testing.T) {
	if testing.Short() {
		t.Skip("imports the repository from source")
	}
	tc := newTypeChecker()
	if _, err := tc.check("store := memory.New(&memory.Options{MaxKeys: 10})\n_ = store\n"); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("memory.New as one value: %v", err)
	}
	if _, err := tc.check("var d *defender.Defender\nd.NoSuchMethod()\n"); err == nil {
		t.Error("a method that does not exist was not caught")
	}
	if skip, err := tc.check("store, err := memory.New(nil)\nd, err := defender.New(store, cfg, nil)\n"); skip || err != nil {
		t.Errorf("a fragment using cfg from elsewhere: skip %v, %v", skip, err)
	}
	if _, err := tc.check("r := chi.NewRouter()\nr.Use(m.Wrap)\n"); err != nil {
		t.Errorf("a package the checker does not import: %v", err)
	}
}
