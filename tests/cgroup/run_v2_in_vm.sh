#!/usr/bin/env bash
# Runs the cgroupv2 tests (cgroup_v2_real_test) inside the throw-away cgroup v2 VM of
# ../shared/tools/cgv2-vm, as the only process of the delegated cgroup /ci (systemd
# Delegate=yes), with CELLHOUSE_REQUIRE_CGROUPV2=1 so that a test unable to run there fails
# instead of skipping. Exit 77 (CTest SKIP_RETURN_CODE) when the VM tool or root is missing.
# Usage: run_v2_in_vm.sh SOURCE_DIR BUILD_DIR TEST_BINARY [gtest args...]
set -uo pipefail
src=$1 build=$2 bin=$3
shift 3
vm="$src/../shared/tools/cgv2-vm/run-in-vm.sh"
if [ ! -f "$vm" ]; then
  echo "SKIP: $vm is not there"
  exit 77
fi
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: the cgroup v2 VM needs root"
  exit 77
fi
start=$(date +%s.%N)
CELLHOUSE_REQUIRE_CGROUPV2=1 bash "$vm" -w "$build" -- "$bin" --gtest_color=no "$@"
rc=$?
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v rc="$rc" \
  'BEGIN { printf "cgroup v2 VM run: %.1f s wall (boot included), exit %d\n", e - s, rc }'
exit "$rc"
