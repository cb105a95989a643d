#!/usr/bin/env bash
# Prints statement coverage of each library package and fails below 95%.
set -uo pipefail
fail=0
for pkg in $(go list ./... | grep -v -e /cmd/ -e /internal/ -e /bench -e /examples); do
  out=$(go test -count=1 -cover "$pkg" 2>&1 | tail -1)
  pct=$(grep -o 'coverage: [0-9.]*%' <<<"$out" | grep -o '[0-9.]*')
  printf '%-60s %s\n' "$pkg" "${pct:-?}%"
  if [ -z "$pct" ] || awk -v p="$pct" 'BEGIN{exit !(p<95)}'; then fail=1; fi
done
exit $fail
