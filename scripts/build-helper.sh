#!/bin/sh
# Builds libexec/pmjq-spawn, the job helper that forks and execs every job
# (pmjq(1), THE JOB PROCESS): C, libc only. npm runs this at install.
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-cc}
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "pmjq: building libexec/pmjq-spawn needs a C compiler ($CC not found): apt-get install gcc libc6-dev, or set CC" >&2
  exit 1
fi
# (built beside it, then renamed: a running pmjq keeps the helper it started)
$CC -O2 -Wall -Wextra -o libexec/pmjq-spawn.new libexec/pmjq-spawn.c
mv libexec/pmjq-spawn.new libexec/pmjq-spawn
