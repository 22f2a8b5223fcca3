#!/usr/bin/env bash
# Builds cellhouse twice and runs every test; what CI runs (.ci/run calls this). As root on a
# fresh Debian 12 machine it installs what it needs first.
#
#   1. g++, optimised, warnings as errors: every test (unit, privileged, e2e, and the cgroup v2
#      tests inside a throw-away VM), through CTest.
#   2. clang with AddressSanitizer + UndefinedBehaviorSanitizer: the unit tests and the
#      libFuzzer targets for a bounded time.
#   3. clang-format and clang-tidy over the project's sources.
#
# Environment: JOBS (default 2), SKIP_LINT=1, SKIP_ASAN=1 to shorten a local run.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-2}"
started=$SECONDS

bash tools/setup.sh

step() { printf '\n=== %s (%ds)\n' "$*" $((SECONDS - started)); }

step "build 1: g++ -Werror"
cmake -S . -B build/ci-gcc -G Ninja -DCMAKE_BUILD_TYPE=Release -DCELLHOUSE_WERROR=ON >/dev/null
cmake --build build/ci-gcc -j "$jobs"

step "tests: g++ build (unit, privileged, e2e)"
ctest --test-dir build/ci-gcc -j "$jobs" --output-on-failure -LE 'fuzz|cgroupv2'

if [[ "${SKIP_ASAN:-0}" != 1 ]]; then
  step "build 2: clang, ASan + UBSan, libFuzzer"
  cmake -S . -B build/ci-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCELLHOUSE_WERROR=ON -DCELLHOUSE_SANITIZE=ON -DCELLHOUSE_FUZZ=ON \
    -DCELLHOUSE_BUILD_BENCH=OFF >/dev/null
  cmake --build build/ci-asan -j "$jobs"
  step "tests: sanitizer build (unit) and fuzzers"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build/ci-asan -j "$jobs" --output-on-failure -L 'unit|fuzz'
fi

if [[ "${SKIP_LINT:-0}" != 1 ]]; then
  step "lint: clang-format, clang-tidy"
  bash tools/lint.sh build/ci-gcc
fi

step "all passed"
