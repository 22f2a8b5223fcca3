#!/usr/bin/env bash
# clang-format (check only) and clang-tidy over the project's own sources, using the
# compile_commands.json of a build directory (default build/ci-gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/ci-gcc}"
mapfile -t sources < <(git ls-files '*.cc' '*.h' | grep -v '^tests/.*/data/')
clang-format --dry-run --Werror "${sources[@]}"
mapfile -t units < <(git ls-files '*.cc' | grep -v -e '_fuzzer\.cc$' -e '^tests/.*/data/')
# Headers are checked through the units that include them (HeaderFilterRegex in .clang-tidy).
# -Wno-unknown-warning-option: the build's g++-only warnings (-Wlogical-op, ...) are not clang's.
printf '%s\n' "${units[@]}" | xargs -P "${JOBS:-2}" -n 8 clang-tidy -p "$build" --quiet \
  --extra-arg=-Wno-unknown-warning-option \
  2> >(grep -v -e '^[0-9]* warnings* generated' -e '^Suppressed' -e '^Use -header-filter' >&2)
