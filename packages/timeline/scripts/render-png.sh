#!/bin/sh
# Optional: rasterise a timeline SVG to PNG, to look at it or attach it to a report.
# Nothing in the build or the tests needs this script or a converter; the SVG is the product.
#
#   packages/timeline/scripts/render-png.sh timeline.svg [timeline.png] [zoom]
#
# Uses the first converter it finds:
#   rsvg-convert   (Debian/Ubuntu: apt-get install librsvg2-bin)   exact, fast
#   inkscape
#   chromium / chromium-browser / google-chrome, headless screenshot of the SVG's own size
# Exits 3 when none is installed. `convert` is not used: ImageMagick often delegates SVG to a
# weak renderer, and some machines only have a stand-in under that name.
set -eu

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: $0 in.svg [out.png] [zoom]" >&2
  exit 2
fi
in=$1
out=${2:-${in%.svg}.png}
zoom=${3:-1}
[ -r "$in" ] || { echo "$0: cannot read $in" >&2; exit 2; }

if command -v rsvg-convert >/dev/null 2>&1; then
  exec rsvg-convert --zoom="$zoom" --format=png --output="$out" "$in"
fi
if command -v inkscape >/dev/null 2>&1; then
  dpi=$(awk "BEGIN { print 96 * $zoom }")
  exec inkscape "$in" --export-type=png --export-dpi="$dpi" --export-filename="$out"
fi
for browser in chromium chromium-browser google-chrome; do
  if command -v "$browser" >/dev/null 2>&1; then
    # The window must be the picture's size: read it from the root element.
    size=$(sed -n 's/.*<svg[^>]* width="\([0-9.]*\)" height="\([0-9.]*\)".*/\1,\2/p' "$in" | head -n 1)
    [ -n "$size" ] || { echo "$0: no width/height on the <svg> element of $in" >&2; exit 2; }
    abs=$(cd "$(dirname "$in")" && pwd)/$(basename "$in")
    exec "$browser" --headless --disable-gpu --hide-scrollbars --force-device-scale-factor="$zoom" \
      --window-size="$size" --screenshot="$out" "file://$abs"
  fi
done
echo "$0: no SVG converter found; install one, e.g. apt-get install librsvg2-bin" >&2
exit 3
