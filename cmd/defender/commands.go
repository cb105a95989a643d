package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/defender"
)

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: defender %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping -h to errHelp and other errors to usage
// errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usagef("%v", err)
	}
	return nil
}

// display quotes identifiers that a terminal would show ambiguously
// (spaces, control characters, quotes, or empty).
func display(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '"' || r == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}

func remaining(b defender.BlockInfo) string {
	if b.Permanent {
		return "permanent"
	}
	return strconv.FormatInt(b.SecondsRemaining, 10) + "s"
}

// runBlocks lists every block, one page of the store at a time.
func runBlocks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("blocks", "[--store URL] [--json]", stderr)
	store := fs.String("store", "", "store URL (default DEFENDER_STORE_URL, else bolt file "+defaultStoreFile+" in the working directory)")
	asJSON := fs.Bool("json", false, "print one JSON object per block (the admin API's form)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	d, closeAll, err := openDefender(ctx, *store)
	if err != nil {
		return err
	}
	defer closeAll()

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	enc := json.NewEncoder(stdout)
	n := 0
	cursor := ""
	for {
		page, next, err := d.Blocks(ctx, cursor, 500)
		if err != nil {
			return fmt.Errorf("listing blocks: %w", err)
		}
		for _, b := range page {
			if n == 0 && !*asJSON {
				fmt.Fprintln(tw, "KIND\tIP\tUSERNAME\tFAILURES\tREMAINING")
			}
			n++
			if *asJSON {
				if err := enc.Encode(b); err != nil {
					return err
				}
				continue
			}
			ip, user := b.IP, display(b.Username)
			if b.Kind == defender.KindIP {
				user = "-"
			}
			if b.Kind == defender.KindUsername {
				ip = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Kind, ip, user, b.Count, remaining(b))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 && !*asJSON {
		fmt.Fprintln(stdout, "no blocks")
	}
	return nil
}

// runUnblock removes one block (and the identity's failure counter).
func runUnblock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("unblock", "[--store URL] ip ADDR | username NAME | pair ADDR NAME", stderr)
	store := fs.String("store", "", "store URL (default DEFENDER_STORE_URL, else bolt file "+defaultStoreFile+" in the working directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return usagef("say what to unblock: ip ADDR, username NAME or pair ADDR NAME")
	}
	kind := rest[0]
	want := 2
	if kind == "pair" {
		want = 3
	}
	switch kind {
	case "ip", "username", "pair":
	default:
		return usagef("unknown kind %q: use ip, username or pair", kind)
	}
	if len(rest) != want {
		return usagef("%s takes %d argument(s), got %d (quote names with spaces)", kind, want-1, len(rest)-1)
	}
	d, closeAll, err := openDefender(ctx, *store)
	if err != nil {
		return err
	}
	defer closeAll()
	var ok bool
	var what string
	switch kind {
	case "ip":
		what = "ip " + rest[1]
		ok, err = d.UnblockIP(ctx, strings.TrimSpace(rest[1]))
	case "username":
		what = "username " + display(rest[1])
		ok, err = d.UnblockUsername(ctx, rest[1])
	default:
		what = "pair " + rest[1] + " " + display(rest[2])
		ok, err = d.UnblockPair(ctx, strings.TrimSpace(rest[1]), rest[2])
	}
	if err != nil {
		return fmt.Errorf("unblocking %s: %w", what, err)
	}
	if ok {
		fmt.Fprintf(stdout, "unblocked %s\n", what)
	} else {
		fmt.Fprintf(stdout, "%s was not blocked (its failure count, if any, was cleared)\n", what)
	}
	return nil
}

// runCleanup deletes audit records older than
// DEFENDER_ACCESS_ATTEMPT_EXPIRATION.
func runCleanup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cleanup", "[--audit URL]", stderr)
	audit := fs.String("audit", "", "audit sink URL (default DEFENDER_AUDIT_URL, else file "+defaultAuditFile+" in the working directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	raw, setting := *audit, "--audit"
	if raw == "" {
		raw, setting = cfg.AuditURL, "DEFENDER_AUDIT_URL"
	}
	if raw == "" {
		if raw, err = defaultAuditURL(); err != nil {
			return err
		}
		if _, err := os.Stat(defaultAuditFile); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stdout, "no audit log here (%s does not exist; set --audit or DEFENDER_AUDIT_URL): nothing to clean\n", defaultAuditFile)
			return nil
		}
	}
	if raw == "none" {
		return usagef("%s is none: there is no audit log to clean", setting)
	}
	sink, err := auditlog.Open(ctx, raw)
	if err != nil {
		if errors.Is(err, auditlog.ErrInvalidURL) {
			return fmt.Errorf("%s: %w", setting, err)
		}
		return fmt.Errorf("opening audit log %s: %w", auditlog.Redact(raw), err)
	}
	defer sink.Close()
	_, err = auditlog.Cleanup(ctx, sink, cfg.AccessAttemptExpiration, stdout)
	return err
}
