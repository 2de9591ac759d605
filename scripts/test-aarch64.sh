#!/usr/bin/env bash
# Run the test suite on aarch64 (the Jetson's CPU architecture) under emulation, here on x86-64.
#
# Builds once, and caches, an arm64 Debian root with debootstrap and qemu-user-static (Debian's
# packages, installed with apt-get when missing), installs Python, gcc and the project's core and
# test dependencies inside it (aarch64 wheels from the package index: numpy, pyzmq, msgpack, click,
# pillow, pytest, hypothesis; no torch, so the torch-heavy tests skip themselves and say why), copies
# the working tree in and runs pytest there. The ring's stress test runs too: under emulation the
# C11 acquire/release helper is compiled by the root's gcc for aarch64.
#
# Usage (as root: it mounts binfmt_misc, /proc and /dev in the root):
#   scripts/test-aarch64.sh [--rebuild] [--timeout SECONDS] [--data DIR | --no-data] [-- PYTEST_ARGS...]
#     --rebuild        delete the cached root and build it again
#     --timeout S      limit for the pytest run (default 5400); building has its own limits
#     --data DIR       sample data folder, bound read-only into the root (default: ../shared/data
#                      beside the checkout, when present); --no-data: none (those tests skip)
#     PYTEST_ARGS      passed to pytest instead of the default (tests -m "not realtime": the whole suite
#                      but the few tests that assert rates at the camera's pace, which emulation cannot keep)
# Environment: SPIKE_EDGE_ARM64_ROOT (cached root; default ~/.cache/spike-edge/arm64-root),
#   DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian).
# Ends with one summary line: "aarch64 tests: <pytest's counts>; ring helper: <its ldar, stlr and dmb
# instructions as compiled for aarch64>; wall <time> (exit N)".
# Measured here (2 cores): about 3 minutes with the cached root, 9-17 minutes when it builds the root
# first (depending on load and network), so .ci/run runs it after make test.
set -euo pipefail
{  # the whole script is one compound command: bash reads it all before running any of it

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${SPIKE_EDGE_ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/spike-edge/arm64-root}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY_PACKAGES=(numpy pyzmq msgpack click pillow tqdm prometheus-client aiohttp pytest hypothesis)
READY=$ROOT/.spike-edge-ready
REBUILD=0
TIMEOUT_S=5400
DATA=$REPO/../shared/data
PYTEST_ARGS=()

die() { echo "test-aarch64: $*" >&2; exit 2; }
say() { echo "test-aarch64: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rebuild) REBUILD=1 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs a number of seconds"; TIMEOUT_S=$2; shift ;;
        --data) [ $# -ge 2 ] || die "--data needs a folder"; DATA=$2; shift ;;
        --no-data) DATA= ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
case "$TIMEOUT_S" in ''|*[!0-9]*) die "--timeout must be a whole number of seconds, got '$TIMEOUT_S'" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (binfmt_misc, debootstrap and chroot need it)"
[ "$(uname -m)" != aarch64 ] || say "this machine is aarch64 already: the root runs natively"
START_S=$(date +%s)

# -- host tools: qemu-user-static, debootstrap, binfmt-support (Debian's packages) ----------------
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null \
        || ! command -v update-binfmts >/dev/null; then
    say "installing qemu-user-static debootstrap binfmt-support"
    timeout 600 apt-get update -q
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q qemu-user-static debootstrap binfmt-support
fi

# -- the kernel runs aarch64 binaries through qemu: binfmt_misc mounted, qemu-aarch64 enabled ------
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
    say "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$BINFMT"
fi
if [ "$(uname -m)" != aarch64 ]; then
    if [ ! -e "$BINFMT/qemu-aarch64" ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if [ ! -e "$BINFMT/qemu-aarch64" ]; then  # register it by hand (F: the interpreter is opened now, so it works in the chroot)
        say "registering qemu-aarch64 with binfmt_misc by hand"
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            > "$BINFMT/register"
    fi
    grep -q '^enabled' "$BINFMT/qemu-aarch64" || echo 1 > "$BINFMT/qemu-aarch64"
fi

# -- mounts inside the root, undone on exit -----------------------------------------------------
MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true; done
    MOUNTED=()
}
trap cleanup EXIT
mount_in() {  # mount_in TARGET MOUNT-ARGS...
    local target=$1; shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTED+=("$target")
}
enter() {  # enter ROOT: /proc, /dev and a private /dev/shm (the ring lives there)
    mount_in "$1/proc" -t proc proc
    mount_in "$1/dev" --bind /dev
    mount_in "$1/dev/shm" -t tmpfs -o size=1g,mode=1777 shm
}
in_root() {  # in_root TIMEOUT CMD...: run in the root with a clean environment
    local limit=$1; shift
    timeout "$limit" chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120 "$@"
}

unmount_leftovers() {  # mounts under the root left by a killed run (never delete through them)
    local target
    for target in $(awk -v r="$ROOT" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
        umount "$target" 2>/dev/null || umount -l "$target"
    done
}
host_network() {  # the host's name resolution and trusted CAs (a TLS-inspecting proxy's included) for pip
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"
    fi
}

# -- the cached arm64 root ------------------------------------------------------------------------
unmount_leftovers
if [ "$REBUILD" -eq 1 ] && [ -d "$ROOT" ]; then
    say "--rebuild: removing $ROOT"
    rm -rf --one-file-system "$ROOT"
fi
if [ ! -e "$READY" ]; then
    BUILD=$ROOT.partial
    rm -rf --one-file-system "$BUILD"
    mkdir -p "$(dirname "$ROOT")"
    say "debootstrap $SUITE arm64 into $BUILD (a few minutes)"
    timeout 2400 debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
        "$SUITE" "$BUILD" "$MIRROR"
    rm -rf --one-file-system "$ROOT"
    mv "$BUILD" "$ROOT"
    enter "$ROOT"
    host_network
    say "installing ${PY_PACKAGES[*]} (aarch64 wheels) into /opt/venv in the root"
    in_root 300 python3 -m venv /opt/venv
    CERT_ENV=()
    [ ! -f "$ROOT/etc/ssl/host-ca-certificates.crt" ] || CERT_ENV=(PIP_CERT=/etc/ssl/host-ca-certificates.crt)
    in_root 1800 /usr/bin/env "${CERT_ENV[@]}" /opt/venv/bin/pip install -q --only-binary=:all: "${PY_PACKAGES[@]}"
    cleanup
    in_root 60 /opt/venv/bin/python -c 'import platform, numpy, zmq; print("root ready:", platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__)' | tee "$READY"
else
    say "reusing $ROOT ($(cat "$READY"))"
fi
# the Python packages: installed again whenever the list above changes (pip keeps what is there)
PKG_STAMP=$ROOT/.spike-edge-packages
if [ "$(cat "$PKG_STAMP" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
    enter "$ROOT"
    host_network
    say "installing ${PY_PACKAGES[*]} (aarch64 wheels) into /opt/venv in the root"
    CERT_ENV=()
    [ ! -f "$ROOT/etc/ssl/host-ca-certificates.crt" ] || CERT_ENV=(PIP_CERT=/etc/ssl/host-ca-certificates.crt)
    in_root 1800 /usr/bin/env "${CERT_ENV[@]}" /opt/venv/bin/pip install -q --only-binary=:all: "${PY_PACKAGES[@]}"
    cleanup
    echo "${PY_PACKAGES[*]}" > "$PKG_STAMP"
fi

# -- the working tree, copied in (tracked and untracked files git does not ignore) -----------------
rm -rf --one-file-system "$ROOT/src"
mkdir -p "$ROOT/src"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | tar -C "$REPO" --null --ignore-failed-read -T - -cf - | tar -xf - -C "$ROOT/src"

# the console scripts of pyproject.toml, as pip would write them (the tree is on PYTHONPATH, not installed)
for entry in spike-edge=edge.cli spike-host=host.cli spike-train=training.cli; do
    printf '#!/opt/venv/bin/python\nimport sys\nfrom %s import main\nsys.exit(main())\n' "${entry#*=}" \
        > "$ROOT/opt/venv/bin/${entry%%=*}"
    chmod 755 "$ROOT/opt/venv/bin/${entry%%=*}"
done

enter "$ROOT"
DATA_ENV=()
if [ -n "$DATA" ] && [ -d "$DATA" ]; then
    DATA=$(cd "$DATA" && pwd)
    mount_in "$ROOT/srv/spike-edge-data" --bind "$DATA"
    mount -o remount,bind,ro "$ROOT/srv/spike-edge-data"
    DATA_ENV=(SPIKE_EDGE_SHARED_DATA=/srv/spike-edge-data)
    say "sample data: $DATA (read-only)"
fi
# by default the whole suite but the tests that assert the camera's pace (marker "realtime"):
# emulation runs several times slower than the hardware
[ ${#PYTEST_ARGS[@]} -gt 0 ] || PYTEST_ARGS=(tests -m "not realtime")

say "pytest under emulation (limit ${TIMEOUT_S}s): ${PYTEST_ARGS[*]}"
LOG=$(mktemp)
set +e
in_root $((TIMEOUT_S + 60)) /usr/bin/env "${DATA_ENV[@]}" PYTHONPATH=/src PYTHONDONTWRITEBYTECODE=1 \
    SPIKE_EDGE_CACHE=/root/.cache/spike-edge \
    sh -c 'cd /src && exec timeout -s INT -k 60 "$0" /opt/venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"' \
    "$TIMEOUT_S" "${PYTEST_ARGS[@]}" 2>&1 | tee "$LOG"
RC=${PIPESTATUS[0]}
set -e
cleanup
COUNTS=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)|no tests ran' "$LOG" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
rm -f "$LOG"

# -- the ring helper as compiled for aarch64: its acquire/release instructions --------------------
BARRIERS="ring helper not built"
HELPER=$(cd "$ROOT" && ls -t root/.cache/spike-edge/ringsync/ringsync-*.so 2>/dev/null | head -1 || true)  # the newest build
if [ -n "$HELPER" ]; then
    DISASSEMBLY=$(in_root 300 objdump -d --no-show-raw-insn "/$HELPER" || true)
    count() { grep -cE "[[:space:]]$1([[:space:]]|\$)" <<<"$DISASSEMBLY" || true; }
    BARRIERS="ring helper: $(count ldar) ldar, $(count stlr) stlr, $(count dmb) dmb"
fi

WALL_S=$(($(date +%s) - START_S))
echo "aarch64 tests: ${COUNTS:-no pytest summary (timed out or crashed)}; $BARRIERS; wall $((WALL_S / 60))m$((WALL_S % 60))s (exit $RC)"
exit "$RC"
}
