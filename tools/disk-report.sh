#!/usr/bin/env bash
# Prints the free disk space and what the build keeps, so a CI log shows how close a run came to a full disk
# (which fails as a linker bus error, not as a message). Warns, never fails: the estimate is the measured peak of
# a clean `make test` (README, "Development").
set -euo pipefail
cd "$(dirname "$0")/.."
phase="${1:-now}"
need_gb=8
avail_kb=$(df -Pk . | awk 'NR==2 {print $4}')
avail_gb=$((avail_kb / 1024 / 1024))
used=$(du -sh target 2>/dev/null | cut -f1 || true)
echo "disk ($phase): ${avail_gb} GiB free on $(df -P . | awk 'NR==2 {print $6}'), target/ holds ${used:-nothing}"
if [ "$phase" = start ] && [ "$avail_gb" -lt "$need_gb" ]; then
  echo "warning: a clean 'make test' needs about ${need_gb} GiB (target/, Go and cargo caches); ${avail_gb} GiB free" >&2
fi
