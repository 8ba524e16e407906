#!/bin/sh
# npm run demo: drain a scratch copy of spool-example/ with
#
#   pmjq -C <CPUs + 1> -o SCRATCH/archive --once SCRATCH/spool
#
# and show what it left: the archive, one record, one log. The original
# spool-example/ is never touched. One example job (convert/broken) fails on
# purpose, so pmjq --once exits 1; the demo checks that this is the only
# failure and then succeeds (exit 0).
#
# PMJQ_DEMO_LOAD=N overrides the load limit (-C), e.g. on a machine that is
# busy with other work, where pmjq would otherwise wait for the load to drop.
set -eu
cd "$(dirname "$0")/.."

if [ ! -f dist/cli/pmjq.cjs ]; then
  echo "demo: dist/ is missing, building it (npm run build)"
  npm run build
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pmjq-demo.XXXXXX")
cp -R spool-example "$tmp/spool"
# pmjq rejects jobs writable by group or others: a copy made under umask 002
# would be, so make sure it is not.
chmod -R go-w "$tmp/spool"

cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
load=${PMJQ_DEMO_LOAD:-$((cpus + 1))}

# As root, pmjq runs each job as its file's owner and refuses root-owned
# files unless told otherwise; the copy just made belongs to root.
if [ "$(id -u)" = 0 ]; then
  set -- --allow-root
  echo "demo: running as root: the copied jobs are owned by root, hence --allow-root"
else
  set --
fi

echo "demo: scratch copy of spool-example/ in $tmp/spool"
echo "demo: pmjq -C $load -o $tmp/archive $* --once $tmp/spool"
echo "demo: (pmjq's own log follows on stderr, one key=value line per event)"
if [ -z "${PMJQ_DEMO_LOAD:-}" ]; then
  echo "demo: on a busy machine pmjq holds jobs back until the load drops below $load"
  echo "demo: (event=barrier-hold); PMJQ_DEMO_LOAD=100 npm run demo does not wait"
fi
echo
status=0
dist/cli/pmjq.cjs -C "$load" -o "$tmp/archive" "$@" --once "$tmp/spool" || status=$?
echo

records=0
failed=""
for f in "$tmp"/archive/*.json; do
  [ -e "$f" ] || continue
  records=$((records + 1))
  grep -q '"status": "done"' "$f" || failed="$failed $(basename "$f")"
done
broken=""
for f in "$tmp"/archive/*-broken.json; do
  [ -e "$f" ] && broken=$f
done

case $status in
  1)
    if [ "$records" -eq 4 ] && [ -n "$broken" ] && [ "$failed" = " $(basename "$broken")" ] &&
      grep -q '"exit_code": 3' "$broken"; then
      echo "demo: pmjq exited 1, as expected: convert/broken exits 3 on purpose,"
      echo "demo: and with --once pmjq exits 1 when any job failed. The other 3 jobs succeeded."
    else
      echo "demo: pmjq exited 1, but not only because of convert/broken:" >&2
      echo "demo: $records records, not successful:$failed" >&2
      echo "demo: look in $tmp" >&2
      exit 1
    fi
    ;;
  0)
    echo "demo: pmjq exited 0, but convert/broken should have failed; look in $tmp" >&2
    exit 1
    ;;
  *)
    echo "demo: pmjq failed unexpectedly (exit status $status); look in $tmp" >&2
    exit 1
    ;;
esac

echo
echo "== the archive: $tmp/archive =="
ls -l "$tmp/archive"
echo
echo "== a record: $(basename "$broken") =="
cat "$broken"
for f in "$tmp"/archive/*-thumbnail.log; do
  echo
  echo "== a log: $(basename "$f") (cat -v: ^_ is the unit separator of a level prefix) =="
  cat -v "$f"
done
echo
echo "== left in the spool: what is not a job (README.txt, .group.json) and pmjq's state (.pmjq) =="
ls -A "$tmp/spool" "$tmp/spool/convert"
echo
echo "demo: everything is in $tmp (remove it with: rm -rf '$tmp')"
echo "demo: the record format is in man/pmjq.5 (man -l man/pmjq.5)"
