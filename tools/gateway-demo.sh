#!/usr/bin/env bash
# The HTTP gateway in one command: builds cellhouse, generates a model, starts celld and cellgate
# (as user nobody, confined), makes an API key, and prints the chat page's address and a curl
# line. Ctrl-C stops both. As root on a fresh Debian 12 machine it installs what it needs.
#
#   sudo bash tools/gateway-demo.sh              # the 15m preset; PRESET=110m for a larger one
#   PORT=8080 sudo bash tools/gateway-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${PRESET:-15m}"
port="${PORT:-8080}"
jobs="${JOBS:-2}"
bash tools/setup.sh

echo "== building (release)"
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DCELLHOUSE_BUILD_TESTS=OFF \
  -DCELLHOUSE_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo -j "$jobs" --target celld cell-zygote cellmodel cellgate
bin="$PWD/build/demo/bin"

work=$(mktemp -d /tmp/cellhouse-gateway-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== generating a $preset model (deterministic random weights: its text is gibberish)"
"$bin/cellmodel" make --preset "$preset" --seed 42 -o "$work/model.bin" >/dev/null

# The gateway runs as nobody (uid 65534): a policy lets it, and root, open sessions.
mkdir -p "$work/policies"
cat >"$work/policies/default.textproto" <<'POLICY'
name: "default"
description: "gateway demo"
uids: 0
uids: 65534
host_uids { first: 1879048192 count: 65536 }
cgroup { memory_max_bytes: 536870912 }
budgets { max_new_tokens: 200 idle_timeout_seconds: 300 max_sessions: 32 }
POLICY

echo "== starting celld"
"$bin/celld" --model "$work/model.bin" --policy-dir "$work/policies" --socket "$work/celld.sock" \
  --cgroup-subtree "cellhouse-gateway-demo-$$" 2>"$work/celld.log" &
pids+=($!)
for _ in $(seq 1 600); do [[ -S "$work/celld.sock" ]] && break; sleep 0.1; done

echo "== making an API key for tenant 'demo'"
key=$("$bin/cellgate" key add --keys "$work/keys" --tenant demo 2>/dev/null)
chmod 0644 "$work/keys"

echo "== starting cellgate on 127.0.0.1:$port (as nobody, no capabilities, seccomp)"
"$bin/cellgate" --keys "$work/keys" --celld-socket "$work/celld.sock" --user nobody \
  --listen "127.0.0.1:$port" --model-name "$preset" 2>"$work/cellgate.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "cellgate ready" "$work/cellgate.log" && break; sleep 0.1; done
grep -q "cellgate ready" "$work/cellgate.log" || { cat "$work/cellgate.log"; exit 1; }

cat <<EOF2

Open http://127.0.0.1:$port/ and paste the key:
  $key

Or from a shell:
  curl -sN http://127.0.0.1:$port/v1/chat/completions -H "Authorization: Bearer $key" \\
    -d '{"model":"$preset","messages":[{"role":"user","content":"Once upon a time"}],"stream":true}'

Ctrl-C stops celld and cellgate.
EOF2
wait
