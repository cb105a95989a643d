package docscheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository, two levels up.
const root = "../.."

// pages returns README.md and docs/*.md, relative to root.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md found: %v", err)
	}
	out := []string{"README.md"}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		out = append(out, rel)
	}
	return out
}

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	fenceRE   = regexp.MustCompile("(?ms)^```([a-z]*)\\s*\\n(.*?)^```")
	elisionRE = regexp.MustCompile(`(?m)^(\s*)\.\.\.\s*$`)
	// importRE is the import declarations a snippet of statements may
	// start with.
	importRE = regexp.MustCompile(`^\s*(import\s*(\([^)]*\)|"[^"]*")\s*)+`)
)

// slug is GitHub's anchor of a heading: lower case, punctuation dropped,
// spaces as hyphens.
func slug(h string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			sb.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// anchors returns the heading anchors of a Markdown text (code blocks
// excluded).
func anchors(text string) map[string]bool {
	text = fenceRE.ReplaceAllString(text, "")
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(text, -1) {
		out[slug(strings.ReplaceAll(m[1], "`", ""))] = true
	}
	return out
}

// brokenLinks returns a message per relative link of page (a path relative
// to root) that does not resolve.
func brokenLinks(page string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		return nil, err
	}
	text := fenceRE.ReplaceAllString(string(data), "")
	var out []string
	for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		path, frag, _ := strings.Cut(target, "#")
		file := filepath.Join(root, filepath.Dir(page), path)
		if path == "" {
			file = filepath.Join(root, page)
		}
		body, err := os.ReadFile(file)
		if err != nil {
			if fi, serr := os.Stat(file); serr == nil && fi.IsDir() {
				continue
			}
			out = append(out, fmt.Sprintf("%s: link %q: %s does not exist", page, target, filepath.Clean(filepath.Join(filepath.Dir(page), path))))
			continue
		}
		if frag != "" && strings.HasSuffix(file, ".md") && !anchors(string(body))[frag] {
			out = append(out, fmt.Sprintf("%s: link %q: no heading with anchor #%s", page, target, frag))
		}
	}
	return out, nil
}

func TestRelativeLinksResolve(t *testing.T) {
	for _, p := range pages(t) {
		bad, err := brokenLinks(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Error(b)
		}
	}
}

// goBlock is a Go code block of the docs.
type goBlock struct {
	page string // relative to root
	n    int    // its number among the page's code blocks, from 1
	src  string
}

// goBlocks returns the Go blocks of README.md and docs/*.md.
func goBlocks(t *testing.T) []goBlock {
	t.Helper()
	var out []goBlock
	for _, p := range pages(t) {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range fenceRE.FindAllStringSubmatch(string(data), -1) {
			if m[1] == "go" {
				out = append(out, goBlock{page: p, n: i + 1, src: m[2]})
			}
		}
	}
	return out
}

// splitImports returns the import declarations src starts with, and the
// rest of src.
func splitImports(src string) (imports, rest string) {
	m := importRE.FindString(src)
	return m, src[len(m):]
}

// parseFragment parses src, a snippet without a package clause, as
// top-level declarations, or else as the statements of a function, with
// its imports and extra (more import declarations) at the top. The error is
// that of the statements attempt.
func parseFragment(fset *token.FileSet, src, extra string, mode parser.Mode) (*ast.File, error) {
	imports, body := splitImports(src)
	imports += extra
	if f, err := parser.ParseFile(fset, "snippet.go", "package p\n"+imports+"\n"+body, mode); err == nil {
		return f, nil
	}
	return parser.ParseFile(fset, "snippet.go", "package p\n"+imports+"\nfunc _() {\n"+body+"\n}\n", mode)
}

// parseSnippet reports whether src parses as a Go file, as top-level
// declarations, or as statements, and the error of the closest attempt.
// A line holding only "..." stands for elided code.
func parseSnippet(src string) error {
	src = elisionRE.ReplaceAllString(src, "$1// ...")
	fset := token.NewFileSet()
	var err error
	if strings.HasPrefix(strings.TrimSpace(src), "package ") {
		_, err = parser.ParseFile(fset, "snippet.go", src, parser.AllErrors)
	} else {
		_, err = parseFragment(fset, src, "", parser.AllErrors)
	}
	return err
}

func TestGoSnippetsParse(t *testing.T) {
	blocks := goBlocks(t)
	for _, b := range blocks {
		if err := parseSnippet(b.src); err != nil {
			t.Errorf("%s: Go block %d does not parse: %v\n%s", b.page, b.n, err, b.src)
		}
	}
	if len(blocks) < 10 {
		t.Fatalf("found only %d Go blocks in the docs", len(blocks))
	}
}

// TestCheckersCatch: a broken link and a broken snippet are reported.
func TestCheckersCatch(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "page.md")
	os.WriteFile(filepath.Join(dir, "other.md"), []byte("# A title\n"), 0o644)
	os.WriteFile(page, []byte("[ok](other.md#a-title) [gone](missing.md) [frag](other.md#nope) [web](https://example.com/x.md)\n"), 0o644)
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(abs, page) // brokenLinks takes a path relative to root
	if err != nil {
		t.Fatal(err)
	}
	bad, err := brokenLinks(rel)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 2 || !strings.Contains(bad[0], "missing.md does not exist") || !strings.Contains(bad[1], "#nope") {
		t.Errorf("brokenLinks = %q, want the missing file and the missing anchor", bad)
	}
	if err := parseSnippet("x := f(\n"); err == nil {
		t.Error("a broken snippet parsed")
	}
	for _, ok := range []string{"package p\nfunc F() {}\n", "func F() {}\n", "x := 1\n_ = x\n", "import \"fmt\"\n\nfmt.Println()\n...\n"} {
		if err := parseSnippet(ok); err != nil {
			t.Errorf("parseSnippet(%q) = %v", ok, err)
		}
	}
}
