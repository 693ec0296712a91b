#!/usr/bin/env bash
# `make test-stress`: a command (default `make test`) with CPU-burning loops beside it, so that tests
# which only pass on an idle machine fail here first. KRYSTAL_STRESS_LOOPS sets how many loops
# (default 2, one per core of the 2-core machines CI and robots run on). The loops always stop: on
# success, failure, Ctrl-C or SIGTERM.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1m[test-stress]\033[0m %s\n' "$*" >&2; }

loops=${KRYSTAL_STRESS_LOOPS:-2}
pids=()
stop_loops() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
}
trap stop_loops EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Each loop also ends by itself once this script is gone (even after SIGKILL): it burns in chunks
# of ~50 ms and checks that its parent is still this script.
burn='import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(10**6):
        pass'
for ((i = 0; i < loops; i++)); do
  python3 -c "$burn" &
  pids+=("$!")
done
[[ $# -gt 0 ]] || set -- make --no-print-directory test
say "$loops busy loop(s) (pids ${pids[*]}) beside: $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"
start=$(date +%s)
"$@"
rc=$?
say "exit $rc after $(($(date +%s) - start)) s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
exit "$rc"
