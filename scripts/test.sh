#!/bin/sh
# `npm test`: the whole test suite, on a fresh machine too. First what the
# tests need and the machine lacks (Debian packages): as root it is installed
# with apt-get; otherwise one line names it, and the run stops there. Then
# pmjq is built and the suite runs (arguments go to tap: npm test -- FILE).
set -eu
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

need=""
have "${CC:-cc}" || need="$need gcc"               # the job helper (scripts/build-helper.sh): C
[ -e /usr/include/stdio.h ] || need="$need libc6-dev"  # and libc's headers
have groff || need="$need groff-base"              # test/project/docs: man pages lint
have man || need="$need man-db"                    # test/project/docs: man pages render
{ have setpriv && have unshare; } || need="$need util-linux"  # the tests act as other users; cluster mounts
have bindfs || need="$need bindfs"                 # cluster and fault tests: one spool, many mounts
have fusermount3 || need="$need fuse3"
[ -x /usr/bin/chromium ] || need="$need chromium"  # test/http/browser: the dashboard
have strace || need="$need strace"                 # test/spool/archive-faults: fault injection
have python3 || need="$need python3"               # protocol tests: Python jobs
have systemd-analyze || need="$need systemd"       # test/project/service: systemd-analyze verify
have zsh || need="$need zsh"                       # test/cli/completion: zsh -n

if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "test: installing$need"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  else
    echo "test: the tests need packages this machine lacks; as root: apt-get install$need" >&2
    exit 1
  fi
fi

# the suite mounts filesystems (FUSE, tmpfs) and runs jobs as other users
if [ "$(id -u)" != 0 ] && [ $# -eq 0 ]; then
  echo "test: the whole suite needs root (it mounts filesystems and runs jobs as other users): sudo npm test; as $(id -un 2>/dev/null || id -u), npm test -- test/FILE.test.ts runs one file" >&2
  exit 1
fi

[ -x node_modules/.bin/tap ] || npm ci --no-audit --no-fund
node_modules/.bin/tsc -p tsconfig.json
node scripts/bundle-cli.mjs
sh scripts/build-helper.sh
# tap only strips the tests' types: check them
node_modules/.bin/tsc -p tsconfig.check.json
# and lint them with the sources (biome.json)
node_modules/.bin/biome lint
exec node_modules/.bin/tap "$@"
