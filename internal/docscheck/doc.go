// Package docscheck holds the tests that keep the user documentation
// honest: every relative link in README.md and docs/*.md resolves (the file
// exists and, for a #fragment into Markdown, the heading does), every Go
// code block parses as Go (a file, declarations, or statements), and every
// Go block that is not a whole program type-checks against the
// repository's packages, imported from source, with the imports it needs
// added (a call with the wrong number of results or arguments, a method or
// field that does not exist, fails; names a fragment takes from elsewhere
// are allowed). It has no API; `make test` runs it with the other tests.
package docscheck
