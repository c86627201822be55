#!/usr/bin/env bash
# Builds the cosmos-sim Docker image locally (no registry): FROM scratch, the simulator built
# as a static binary, Debian's busybox-static as /bin/sh, and /workspace laid out like a
# cosmos-transfer1 checkout with placeholder checkpoints. Safe to run concurrently (a lock)
# and quick when nothing changed (cargo and the Docker layer cache both no-op).
# The last line printed is the image reference, e.g. `cosmos-sim:0.1.0`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
busybox=${COSMOS_BUSYBOX:-/bin/busybox}

die() { echo "build-sim-image: $*" >&2; exit 1; }
# A static executable (static-pie included) asks for no program interpreter.
dynamic() { LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; }

command -v docker >/dev/null || die "docker is not installed (.ci/run: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (start dockerd)"
command -v readelf >/dev/null || die "readelf is missing (.ci/run: apt-get install binutils)"
[ -x "$busybox" ] || die "$busybox is missing; install Debian's busybox-static (.ci/run: apt-get install busybox-static)"
if dynamic "$busybox"; then
    die "$busybox is dynamically linked; install Debian's busybox-static, not busybox (.ci/run does)"
fi

mkdir -p "$target_dir"
exec 9>"$target_dir/.sim-image.lock"
flock 9

triple=$(rustc -vV | sed -n 's/^host: //p')
# With an explicit --target, RUSTFLAGS reach only the sim, not build scripts or proc macros.
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --release --locked -p cosmos-sim --target "$triple" >&2
bin="$target_dir/$triple/release/cosmos-sim"
if dynamic "$bin"; then
    die "$bin came out dynamically linked"
fi
version=$("$bin" --version | awk '{print $2}')
image="cosmos-sim:$version"

ctx="$target_dir/sim-image"
rootfs="$ctx/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs/bin" "$rootfs/usr/local/bin" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
cp "$bin" "$rootfs/usr/local/bin/cosmos-sim"
for name in torchrun python python3 nvidia-smi huggingface-cli; do
    ln -sf cosmos-sim "$rootfs/usr/local/bin/$name"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
"$bin" checkout "$rootfs/workspace"
# File times do not enter Docker's cache key, so an unchanged tree reuses the cached layer.
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin PYTHONPATH=/workspace
WORKDIR /workspace
LABEL org.opencontainers.image.title="cosmos-sim" cosmos.sim.version="$version"
CMD ["/bin/sh"]
DOCKERFILE
# This engine has no buildx; the classic builder is enough for a FROM scratch copy.
if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$ctx" 2>&1); then
    echo "$out" >&2
    die "docker build of $image failed"
fi
# The test kit skips this script while the stamp is newer than every input of the image.
echo "$image" > "$ctx/stamp"
echo "$image"
