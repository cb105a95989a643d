#!/usr/bin/env bash
# Prints statement coverage of each library package and fails below 95%.
# Packages that hold only tests ("no statements") are listed and skipped.
set -uo pipefail
fail=0
for pkg in $(go list ./... | grep -v -e /cmd/ -e /internal/ -e /bench -e /examples); do
  out=$(go test -count=1 -cover "$pkg" 2>&1)
  last=$(tail -1 <<<"$out")
  if grep -q 'no statements\|no test files' <<<"$last"; then
    printf '%-60s %s\n' "$pkg" "(no statements: tests only)"
    continue
  fi
  pct=$(grep -o 'coverage: [0-9.]*%' <<<"$last" | grep -o '[0-9.]*')
  if [ -z "$pct" ]; then
    printf '%-60s %s\n' "$pkg" "TESTS FAILED"
    grep -E -e '--- FAIL|FAIL' <<<"$out" | head -5 | sed 's/^/    /'
    fail=1
    continue
  fi
  printf '%-60s %s%%\n' "$pkg" "$pct"
  if awk -v p="$pct" 'BEGIN{exit !(p<95)}'; then fail=1; fi
done
exit $fail
