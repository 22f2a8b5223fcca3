#!/usr/bin/env bash
# Installs every Debian package that building, testing, benchmarking and the demo need.
# Idempotent: when everything is present it only checks (no apt-get update, well under a second).
set -euo pipefail

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git
  clang clang-tidy clang-format libclang-rt-14-dev
  # libraries the project links
  libseccomp-dev libcap-dev libsystemd-dev libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libopenblas-dev libmicrohttpd-dev
  # the HTTP gateway (cellgate): JSON; SHA-256 and constant-time comparison for its API keys
  nlohmann-json3-dev libsodium-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  systemd util-linux bubblewrap gnuplot-nox procps
  # the gateway's conformance and browser tests: the openai client and puppeteer-core (npm, pinned
  # in tests/gateway/js/package-lock.json) drive it from node, puppeteer-core drives chromium
  nodejs chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Debian's nodejs comes without npm (its own package); NodeSource's nodejs includes it.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

# npm packages of the gateway's JavaScript tests, exactly as package-lock.json pins them, in a
# folder of their own (no global installs). Re-run when the lock file changed.
install_npm_packages() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/gateway/js"
  if [[ ! -f "$dir/node_modules/.package-lock.json" ||
        "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    echo "setup: npm ci in $dir" >&2
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
  fi
}

if ((${#missing[@]} == 0)); then
  install_npm_packages
  exit 0
fi

if ((EUID != 0)); then
  echo "setup: missing packages: ${missing[*]}; run this script as root to install them." >&2
  exit 1
fi

echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_npm_packages
