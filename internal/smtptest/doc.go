// Package smtptest runs notify's end-to-end tests against an in-process
// SMTP server (github.com/emersion/go-smtp). It is a nested module so that
// users of the library never inherit go-smtp; `make test` runs it with
// every other module.
package smtptest
