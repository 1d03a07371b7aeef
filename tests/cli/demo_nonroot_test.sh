#!/usr/bin/env bash
# demo_nonroot_test.sh BINDIR SRCDIR - `make demo` for a user without root
# (issue 4: "a plain directory with the copy provider when not root"): the
# demo runs as uid 65534 through setpriv(1), with its own amberd, on a plain
# directory, and must end with its last line (every step checked by the
# demo itself: backups verified, the damaged database restored, the oracle
# satisfied).  Needs root to switch user; skipped (77) otherwise, a failure
# when CI=true.
set -uo pipefail
bin=${1:?usage: demo_nonroot_test.sh BINDIR SRCDIR}
src=${2:?}
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
	[ "${CI:-}" = true ] && { echo "FAIL: needs root and setpriv to run the demo as another user"; exit 1; }
	echo "SKIP: needs root and setpriv"
	exit 77
fi
tmp=$(mktemp -d /tmp/amber-demo-nonroot.XXXXXX)
trap 'rm -rf --one-file-system "$tmp"' EXIT
# the build may sit where uid 65534 cannot read (a clone under /root): the
# demo and the four programs it runs are copied to where it can
mkdir -p "$tmp/scripts" "$tmp/build/src/store/tool" "$tmp/build/tests/tools" \
	"$tmp/build/src/daemon" "$tmp/build/src/cli" "$tmp/run"
cp "$src/scripts/demo.sh" "$tmp/scripts/"
for f in src/store/tool/amber-store tests/tools/amber-oracle-check src/daemon/amberd \
	src/cli/amber; do
	cp "$bin/$f" "$tmp/build/$f" || { echo "FAIL: $bin/$f is missing"; exit 1; }
done
chmod -R a+rX "$tmp"
chown 65534:65534 "$tmp/run"
out=$tmp/demo.out
setpriv --reuid 65534 --regid 65534 --clear-groups \
	env TMPDIR="$tmp/run" AMBER_BUILD_DIR="$tmp/build" DEMO_SECONDS=1 \
	bash "$tmp/scripts/demo.sh" >"$out" 2>&1
rc=$?
if [ $rc != 0 ] || ! grep -q '^== Demo complete' "$out"; then
	echo "FAIL: the demo as uid 65534 exited $rc:"
	tail -30 "$out"
	exit 1
fi
grep -q 'Not root' "$out" || { echo "FAIL: the demo did not take its non-root path"; exit 1; }
n=$(grep -c 'verified: ' "$out")
[ "$n" -ge 2 ] || { echo "FAIL: $n verified backups in the demo's output"; exit 1; }
echo "ok   make demo without root: backups verified, the damaged database restored, the oracle satisfied"
