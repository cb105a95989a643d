// Command defender is the command line of the defender login-protection
// library: a demo login site protected by defender, and the administration
// commands for its store and audit log.
//
//	defender demo    [--addr 127.0.0.1:8080] [--store URL] [--audit URL]
//	                 [--user NAME:PASSWORD]... [--admin NAME:PASSWORD] [--no-defender]
//	defender blocks  [--store URL] [--json]        list blocked IPs / usernames / pairs
//	defender unblock [--store URL] ip ADDR | username NAME | pair ADDR NAME
//	defender cleanup [--audit URL]                 remove attempts older than DEFENDER_ACCESS_ATTEMPT_EXPIRATION
//	defender version
//
// Every DEFENDER_* environment variable is read (see the defender package's
// Config); flags win. A bad setting exits with status 2 and a message naming
// the setting; a runtime failure (store unreachable) exits with status 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/bolt"
	"github.com/go-defender/defender/defender"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); else the
// module version from the build information, else "devel".
var version = ""

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (store unreachable, ...)
	exitUsage   = 2 // bad flags or settings: nothing was done
)

// Default file names, in the working directory.
const (
	defaultStoreFile = "defender.db"
	defaultAuditFile = "defender-attempts.jsonl"
)

// usageError is a bad flag or setting: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: defender <command> [flags]

commands:
  demo      run the demo login site protected by defender
  blocks    list blocked IPs, usernames and pairs
  unblock   unblock an IP (ip ADDR), a username (username NAME) or a pair (pair ADDR NAME)
  cleanup   delete audit records older than DEFENDER_ACCESS_ATTEMPT_EXPIRATION
  version   print the version

Settings come from the DEFENDER_* environment variables; flags win.
Run "defender <command> -h" for the flags of a command.
`

// run executes one command and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "demo":
		err = runDemo(ctx, args[1:], stdout, stderr)
	case "blocks":
		err = runBlocks(ctx, args[1:], stdout, stderr)
	case "unblock":
		err = runUnblock(ctx, args[1:], stdout, stderr)
	case "cleanup":
		err = runCleanup(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "defender %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "defender: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "defender %s: %v\n", args[0], err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, defender.ErrConfig) || errors.Is(err, backend.ErrInvalidURL) ||
		errors.Is(err, auditlog.ErrInvalidURL) || errors.Is(err, defender.ErrMiddlewareOptions) {
		return exitUsage
	}
	return exitFailure
}

// errHelp is returned after -h printed the flags.
var errHelp = errors.New("help")

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// loadConfig reads the DEFENDER_* environment.
func loadConfig() (defender.Config, error) {
	cfg, err := defender.ConfigFromEnv()
	if err != nil {
		return cfg, err
	}
	return cfg, nil
}

// defaultStoreURL is the bolt file in the working directory.
func defaultStoreURL() (string, error) {
	p, err := filepath.Abs(defaultStoreFile)
	if err != nil {
		return "", err
	}
	return "bolt://" + filepath.ToSlash(p), nil
}

// defaultAuditURL is the JSON-lines file in the working directory.
func defaultAuditURL() (string, error) {
	p, err := filepath.Abs(defaultAuditFile)
	if err != nil {
		return "", err
	}
	return "file://" + filepath.ToSlash(p), nil
}

// storeURL picks the store: the flag, else DEFENDER_STORE_URL (or
// DEFENDER_REDIS_URL, folded into Config.StoreURL), else the bolt file.
func storeURL(flagVal string, cfg defender.Config) (string, error) {
	switch {
	case flagVal != "":
		return flagVal, nil
	case cfg.StoreURL != "":
		return cfg.StoreURL, nil
	}
	return defaultStoreURL()
}

// openStore opens the store and names the setting in a bad-URL error.
func openStore(ctx context.Context, rawURL, setting string) (backend.Backend, error) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := backend.Open(octx, rawURL)
	if err != nil {
		if errors.Is(err, backend.ErrInvalidURL) {
			return nil, fmt.Errorf("%s: %w", setting, err)
		}
		if errors.Is(err, bolt.ErrLocked) {
			return nil, fmt.Errorf("opening store %s: %w (a running demo holds it: stop it first, or share a Redis store)", backend.Redact(rawURL), err)
		}
		return nil, fmt.Errorf("opening store %s: %w", backend.Redact(rawURL), err)
	}
	return b, nil
}

// openDefender loads the configuration, opens the store and builds the
// engine, for the blocks and unblock commands.
func openDefender(ctx context.Context, storeFlag string) (*defender.Defender, func(), error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, nil, err
	}
	raw, err := storeURL(storeFlag, cfg)
	if err != nil {
		return nil, nil, err
	}
	setting := "DEFENDER_STORE_URL"
	if storeFlag != "" {
		setting = "--store"
	}
	cfg.StoreURL = raw
	store, err := openStore(ctx, raw, setting)
	if err != nil {
		return nil, nil, err
	}
	d, err := defender.New(store, cfg, nil)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return d, func() { d.Close(); store.Close() }, nil
}
