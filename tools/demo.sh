#!/usr/bin/env bash
# The main job: build cellhouse, generate a model, start celld, run three concurrent chat
# sessions that stream their output, show per-session and total memory (the weights are counted
# once), and stop celld cleanly. As root on a fresh Debian 12 machine it installs what it needs.
#
#   sudo bash tools/demo.sh             # the 110m preset (~440 MB of weights)
#   PRESET=15m sudo bash tools/demo.sh  # faster on a small machine
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${PRESET:-110m}"
jobs="${JOBS:-2}"
bash tools/setup.sh

echo "== building (release)"
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DCELLHOUSE_BUILD_TESTS=OFF \
  -DCELLHOUSE_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo -j "$jobs" --target celld cell-zygote cellctl cellmodel
bin="$PWD/build/demo/bin"

work=$(mktemp -d /tmp/cellhouse-demo.XXXXXX)
chmod 755 "$work"
sock="$work/celld.sock"
celld_pid=""
cleanup() {
  if [[ -n "$celld_pid" ]] && kill -0 "$celld_pid" 2>/dev/null; then
    kill -TERM "$celld_pid" 2>/dev/null || true
    wait "$celld_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo
echo "== generating a $preset model"
echo "   Trained weights cannot be downloaded on this machine, so the model is GENERATED:"
echo "   deterministic pseudo-random weights of the real shape. Its text is gibberish; every"
echo "   byte of it is nevertheless computed by the real engine inside real sandboxes."
"$bin/cellmodel" make --preset "$preset" --seed 42 -o "$work/model.bin"

echo
echo "== starting celld"
"$bin/celld" --model "$work/model.bin" --socket "$sock" --cgroup-subtree "cellhouse-demo-$$" \
  --log-level info 2>"$work/celld.log" &
celld_pid=$!
ctl() { "$bin/cellctl" --socket "$sock" "$@"; }
for _ in $(seq 1 600); do
  ctl status >/dev/null 2>&1 && break
  if ! kill -0 "$celld_pid" 2>/dev/null; then cat "$work/celld.log"; exit 1; fi
  sleep 0.1
done
sed 's/^/   celld: /' "$work/celld.log"

echo
echo "== three concurrent chat sessions (each line of input is one turn)"
names=(alice bob carol)
declare -A turn1=([alice]="Once upon a time" [bob]="The little dog" [carol]="Tom and Lily were friends")
declare -A turn2=([alice]="What happened next?" [bob]="Where did it go?" [carol]="What did they play?")
declare -A turn3=([alice]="And then?" [bob]="Tell me more." [carol]="How did it end?")
# Each chat reads its turns from a FIFO held open here, so all three sessions stay alive between
# rounds (and can be measured) until their input ends.
declare -A fd_of
seed=1
for n in "${names[@]}"; do
  mkfifo "$work/$n.in"
  (
    ctl chat --max-tokens 64 --temperature 0.8 --seed "$seed" --stats <"$work/$n.in" \
      >"$work/$n.out" 2>"$work/$n.err"
    echo $? >"$work/$n.rc"
  ) &
  exec {fd}>"$work/$n.in"
  fd_of[$n]=$fd
  seed=$((seed + 1))
done

tty=0
[[ -t 1 ]] && tty=1
declare -A shown=([alice]=0 [bob]=0 [carol]=0)
visible() { tr -cd '[:print:]' | sed 's/^/   /'; }
turns_done() { grep -c '^\[' "$work/$1.err" 2>/dev/null || true; }

run_round() {  # round-number, name of the associative array with the prompts
  local round=$1
  local -n prompts=$2
  echo "-- round $round"
  for n in "${names[@]}"; do printf '%s\n' "${prompts[$n]}" >&"${fd_of[$n]}"; done
  local lines=0
  while :; do
    local waiting=0
    for n in "${names[@]}"; do
      (($(turns_done "$n") >= round)) || [[ -e "$work/$n.rc" ]] || waiting=1
    done
    if ((tty)); then  # a live view of the three streams
      ((lines)) && printf '\033[%dA' "$lines"
      lines=0
      for n in "${names[@]}"; do
        printf '\033[2K   [%-5s] …%s\n' "$n" \
          "$(tail -c +$((shown[$n] + 1)) "$work/$n.out" | tr -cd '[:print:]' | tail -c 60)"
        lines=$((lines + 1))
      done
    fi
    ((waiting)) || break
    sleep 0.2
  done
  ((tty)) && printf '\033[%dA\033[J' "$lines"
  for n in "${names[@]}"; do
    local size
    size=$(stat -c %s "$work/$n.out")
    printf '   [%s] %s\n' "$n" "${prompts[$n]}"
    tail -c +$((shown[$n] + 1)) "$work/$n.out" | head -c $((size - shown[$n])) | visible
    echo
    shown[$n]=$size
  done
}

show_memory() {
  local json weights
  json=$(ctl --json sessions)
  weights=$(ctl --json status | sed -n 's/.*"weights_bytes":\([0-9]*\).*/\1/p')
  echo
  echo "== memory with the three sessions live (PSS divides shared pages among their sharers)"
  printf '   %-8s %8s %10s %10s %15s\n' "process" "pid" "RSS" "PSS" "session cgroup"
  local total_pss=0 zygote="" i=0
  # The zygote is celld's child that runs cell-zygote in celld's own user namespace (workers
  # are forks of it, with the same command line, each in a namespace of its own).
  local own_ns
  own_ns=$(readlink /proc/"$celld_pid"/ns/user)
  for p in $(cat /proc/"$celld_pid"/task/*/children 2>/dev/null); do
    if grep -qs cell-zygote /proc/"$p"/cmdline && [[ "$(readlink /proc/"$p"/ns/user)" == "$own_ns" ]]; then
      zygote=$p
    fi
  done
  row() {  # name pid cgroup-charge
    local rss pss
    rss=$(awk '/^Rss:/ {print $2}' /proc/"$2"/smaps_rollup)
    pss=$(awk '/^Pss:/ {print $2}' /proc/"$2"/smaps_rollup)
    total_pss=$((total_pss + pss))
    printf '   %-8s %8s %7s MB %7s MB %15s\n' "$1" "$2" $((rss / 1024)) $((pss / 1024)) "$3"
  }
  [[ -n "$zygote" ]] && row zygote "$zygote" "(celld's)"
  while read -r pid mem; do
    i=$((i + 1))
    row "session$i" "$pid" "$((mem / 1024)) KiB"
  done < <(echo "$json" | tr '{' '\n' |
    sed -n 's/.*"worker_pid":\([0-9]*\).*"memory_bytes":\([0-9]*\).*/\1 \2/p')
  echo "   The weights ($((weights / 1048576)) MB) are one read-only shared mapping: each process's RSS"
  echo "   counts them in full, its PSS only its share. Total PSS of the zygote and $i sessions:"
  echo "   $((total_pss / 1024)) MB, where a private copy per process would need" \
    "$(((i + 1) * weights / 1048576)) MB for the weights alone."
  echo "   A session's cgroup is charged only its own memory (conversation state, buffers): the"
  echo "   zygote pre-faulted the weights in celld's cgroup."
  echo
}

run_round 1 turn1
show_memory
run_round 2 turn2
run_round 3 turn3
for n in "${names[@]}"; do exec {fd_of[$n]}>&-; done
wait_for=0
for n in "${names[@]}"; do
  while [[ ! -e "$work/$n.rc" ]]; do sleep 0.1; done
  [[ "$(cat "$work/$n.rc")" == 0 ]] || wait_for=1
done
status=$wait_for
echo "-- token counts and speeds per turn (cellctl --stats)"
for n in "${names[@]}"; do sed "s/^/   [$n] /" "$work/$n.err"; done

echo
echo "== stopping celld (SIGTERM)"
kill -TERM "$celld_pid"
rc=0
wait "$celld_pid" || rc=$?
celld_pid=""
tail -n 6 "$work/celld.log" | sed 's/^/   celld: /'
echo "   celld exited with status $rc"
[[ $rc == 0 && $status == 0 ]] || exit 1
echo "== done"
