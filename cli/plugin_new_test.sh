#!/usr/bin/env bash
# Integration test of `sluice plugin new` and `sluice plugin check`, as a plugin author uses
# them: generate a project, build it out of tree against the SDK installed from BUILD_DIR to a
# temp prefix, run its fake-host test, check the plugin, and check that a bad file fails.
# Usage: cli/plugin_new_test.sh SLUICE_BINARY BUILD_DIR
set -euo pipefail
sluice=$1
build=$2
work=$(mktemp -d /tmp/sluice-plugin-new.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$sluice" plugin new my_filter --dir "$work/my_filter" > "$work/new.out"
grep -q "^$work/my_filter/CMakeLists.txt$" "$work/new.out"
cmake --install "$build" --prefix "$work/prefix" --component sdk > /dev/null
launcher=()
if command -v ccache > /dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$work/my_filter" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" > /dev/null
cmake --build "$work/build" -j 2 > /dev/null
(cd "$work/build" && ctest --output-on-failure)

"$sluice" plugin check "$work/build/libmy_filter.so" > "$work/check.out"
cat "$work/check.out"
expected="plugin my_filter 0.1.0
  file: $work/build/libmy_filter.so
  ABI:  1.2 (this Sluice loads 1.0 to 1.2)
  operator types (1):
    my_filter: 1 input, not keyed
      keeps records whose int64 field is at least min
      options:
        field  string  required: the int64 field to test
        min    int64   default 0: the smallest value kept"
if [[ "$(cat "$work/check.out")" != "$expected" ]]; then
  echo "unexpected plugin check output; wanted:" >&2
  echo "$expected" >&2
  exit 1
fi

# A file that is not a plugin: exit 1 and the loader's message on one line.
echo "not a library" > "$work/libbad.so"
if "$sluice" plugin check "$work/libbad.so" 2> "$work/bad.err"; then
  echo "plugin check accepted a file that is not a plugin" >&2
  exit 1
fi
grep -q "^sluice: error: cannot load plugin $work/libbad.so: " "$work/bad.err"
# An existing project is not overwritten.
if "$sluice" plugin new my_filter --dir "$work/my_filter" 2> "$work/again.err"; then
  echo "plugin new overwrote a project" >&2
  exit 1
fi
grep -q "already exists and is not an empty directory" "$work/again.err"
echo "plugin_new_test: passed"
