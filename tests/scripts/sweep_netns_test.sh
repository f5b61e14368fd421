#!/usr/bin/env bash
# scripts/sweep.sh --netns stopped while its peers train in their namespaces: SIGTERM stops the
# run (the peers agree on a stop round), SIGHUP with a run that does not stop (its launcher
# SIGSTOPped) kills it after SWEEP_STOP_GRACE; either way the sweep exits only after its peers,
# and leaves no namespace (so no veth or bridge, which live only inside them) and no process.
# Needs root and a kernel whose namespaces and tbf work (scripts/netns.sh check): skipped (77)
# elsewhere. Three peers on 10.77.1.0-2, inside namespaces named after the sweep's pid.
set -euo pipefail
root=${GOSSIP_SOURCE_ROOT:?}
exe=${GOSSIP_EXE:?}
if ! why=$(bash "$root/scripts/netns.sh" check 2>&1); then
  echo "skipped: $why"
  exit 77
fi
tmp=$(mktemp -d)
tags=()
cleanup() {  # after a failed check: what this test started (their command lines name $tmp)
  local left
  left=$(pgrep -f "$tmp/" || true)
  [[ -z $left ]] || kill -KILL $left 2>/dev/null || true
  for t in ${tags[@]+"${tags[@]}"}; do bash "$root/scripts/netns.sh" down "$t" 3 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$tmp/run.toml" <<TOML
[topology]
file = "ring:3"
[data]
dataset = "blobs"
train_limit = 1500
test_limit = 300
[algorithm]
name = "dpsgd"
lr = 0.05
[compression]
codec = "identity"
[run]
log_every = 10
TOML

# CASE SIGNAL GRACE: start a long sweep, wait until its three peers run in their namespaces,
# (for SIGHUP: freeze its launcher), send SIGNAL, and check what is left.
stop_case() {
  local name=$1 sig=$2 grace=$3 r i tag launcher sweep_pid rc=0
  SWEEP_STOP_GRACE=$grace bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" \
    --netns --networks 50:0 --epochs 1000 --time-budget 120 --out "$tmp/$name" \
    --run 'a=algorithm.name=dpsgd' >"$tmp/$name.out" 2>"$tmp/$name.err" &
  sweep_pid=$!
  tag=s$sweep_pid
  tags+=("$tag")
  for ((i = 0; i < 600; ++i)); do  # up to 60 s for the namespaces and the peers in them
    local running=0
    for ((r = 0; r < 3; ++r)); do
      [[ -z $(ip netns pids "gsp-$tag-$r" 2>/dev/null) ]] || running=$((running + 1))
    done
    ((running < 3)) || break
    kill -0 "$sweep_pid" 2>/dev/null || { cat "$tmp/$name.err" >&2; fail "$name: the sweep ended first"; }
    sleep 0.1
  done
  ((running == 3)) || fail "$name: the peers did not start in namespaces gsp-$tag-* within 60 s"
  sleep 1  # into the training
  if [[ $sig == HUP ]]; then
    launcher=$(ps -o pid= --ppid "$sweep_pid" | tr -d ' ')  # timeout (the budget) over launch
    [[ -n $launcher ]] || fail "$name: no process under the sweep"
    kill -STOP $launcher $(ps -o pid= --ppid "$launcher")
  fi
  local start=$SECONDS
  kill "-$sig" "$sweep_pid"
  for ((i = 0; i < (grace + 20) * 10; ++i)); do kill -0 "$sweep_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$sweep_pid" 2>/dev/null && fail "$name: the sweep still runs $((SECONDS - start)) s after SIG$sig"
  wait "$sweep_pid" || rc=$?
  cat "$tmp/$name.err"
  local left
  left=$(ip netns list | grep -o "gsp-$tag-[a-z0-9]*" || true)
  [[ -z $left ]] || fail "$name: namespaces left: $left"
  left=$(pgrep -f "$tmp/$name" || true)
  [[ -z $left ]] || fail "$name: processes left: $(ps -o pid=,stat=,args= -p "${left//$'\n'/,}")"
  # TERM: the peers ended their round and the launcher reported an orderly stop.
  [[ $sig != TERM ]] || grep -q "launch: stopped" "$tmp/$name/L0-B50/a.log" ||
    fail "$name: the run did not stop in order: $(tail -n 3 "$tmp/$name/L0-B50/a.log")"
  local want=$((128 + $(kill -l "$sig")))
  [[ $rc == "$want" ]] || fail "$name: the sweep exited with $rc, expected $want"
  grep -q "stopping the run in progress" "$tmp/$name.err" || fail "$name: no stop message"
  echo "$name: the sweep exited $((SECONDS - start)) s after SIG$sig with $rc; no namespace or process left"
}

# An agreed stop: the peers end their round.
stop_case term TERM 30
# A run that does not stop: killed after the grace period, before the namespaces go. Under
# nohup SIGHUP is ignored from the start, and a shell cannot trap a signal it was started with
# ignored: the sweep goes on, as nohup asks.
if [[ -n $(trap -p HUP) ]]; then
  echo "hup: skipped: SIGHUP is ignored here (nohup?), so the sweep ignores it too"
else
  stop_case hup HUP 1
  grep -q "did not stop in 1 s: killing it" "$tmp/hup.err" || fail "hup: no kill message"
fi
echo "sweep --netns stop: ok"
