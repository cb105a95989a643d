// Package docscheck holds the test that keeps the user documentation
// honest: every relative link in README.md and docs/*.md resolves (the file
// exists and, for a #fragment into Markdown, the heading does), and every
// Go code block parses as Go (a file, declarations, or statements). It has
// no API; `make test` runs it with the other tests.
package docscheck
