#!/usr/bin/env bash
# A tour of cosmos on one synthetic scene: builds the binary, renders control videos with
# ffmpeg (colour, depth, segmentation, edges), registers them, writes a prompt, shows the exact
# spec and container command Cosmos-Transfer1 would get, then runs it for real on the local
# rehearsal target `cosmos quickstart` sets up (cosmos-sim as the model: no GPU, no Docker).
#
#   scripts/demo.sh            # state goes to target/demo-home (or $COSMOS_HOME)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  else
    echo "ffmpeg is missing: install it (Debian/Ubuntu: sudo apt-get install ffmpeg)" >&2
    exit 2
  fi
fi

cargo build --release --bin cosmos --bin cosmos-sim
cosmos=$PWD/target/release/cosmos
export COSMOS_HOME=${COSMOS_HOME:-$PWD/target/demo-home}
scene=$COSMOS_HOME/scenes/harbour
mkdir -p "$scene"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "rendering a 121-frame 1280x720 scene into $scene"
src="testsrc2=size=1280x720:rate=24"
ffmpeg -v error -y -f lavfi -i "$src" -frames:v 121 -pix_fmt yuv420p "$scene/harbour_color.mp4"
ffmpeg -v error -y -f lavfi -i "$src" -frames:v 121 -vf "format=gray,boxblur=8" -pix_fmt yuv420p "$scene/harbour_depth.mp4"
ffmpeg -v error -y -f lavfi -i "$src" -frames:v 121 -vf "lutrgb=r='bitand(val,192)':g='bitand(val,192)':b='bitand(val,192)'" -pix_fmt yuv420p "$scene/harbour_seg.mp4"
ffmpeg -v error -y -f lavfi -i "$src" -frames:v 121 -vf "edgedetect" -pix_fmt yuv420p "$scene/harbour_edge.mp4"

step "$cosmos" init
step "$cosmos" inputs add "$scene"
step "$cosmos" prompt create "A fishing harbour at dawn, fog rolling over the water, boats moored at the pier" \
  --inputs "$scene" --negative "blurry, cartoon, text" --name harbour-dawn
step "$cosmos" run harbour-dawn --weights vis=0.2,edge=0.3,depth=0.3,seg=0.2 --seed 7 --dry-run
step "$cosmos" quickstart
step "$cosmos" run harbour-dawn --weights vis=0.2,edge=0.3,depth=0.3,seg=0.2 --seed 7
step "$cosmos" list
step "$cosmos" search 'harbour AND fog*'
echo
echo "state is in $COSMOS_HOME; try: COSMOS_HOME=$COSMOS_HOME $cosmos show harbour-dawn"
