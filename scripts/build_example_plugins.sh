#!/usr/bin/env bash
# Installs the Sluice SDK to a temporary prefix and builds examples/plugins out of tree
# against it, exactly as a plugin author would; then runs the examples' unit tests.
# Usage: scripts/build_example_plugins.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=$(mktemp -d /tmp/sluice-plugins.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --install "$build" --prefix "$work/prefix" --component sdk
cmake -S examples/plugins -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix"
cmake --build "$work/build" -j 2
(cd "$work/build" && ctest --output-on-failure)
# Only the entry point may be exported.
for lib in "$work"/build/lib*.so; do
  exported=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}')
  if [[ "$exported" != "sluice_plugin_init_v1" ]]; then
    echo "$(basename "$lib") exports more than its entry point: $exported" >&2
    exit 1
  fi
done
echo "example plugins built against the installed SDK in $work/prefix"
