#!/usr/bin/env bash
# Peer loss, the acceptance measurement of issue 17: 8 peers on a ring
# (configs/ring8_deepsqueeze.toml: DeepSqueeze, 2-bit scaled QSGD), transport.on_peer_loss =
# continue, one peer SIGKILLed at 30% of the run; the survivors finish. With REJOIN_AT (a fraction
# of the run, e.g. 0.5) the killed peer is started again by hand at that point, as
# `gossip peer --rejoin` with the command line and environment it had (its launch nonce too), and
# finishes with the others. Prints the final averaged-model accuracy against an undisturbed run of
# the same settings.
#
#   scripts/peer-loss-check.sh [EPOCHS] [--set KEY=VALUE ...]     (EPOCHS: 15 by default)
#
# Environment: GOSSIP (binary, build/src/gossip), CONFIG, VICTIM (rank, 3), AT (fraction of the
# run, 0.3), REJOIN_AT (unset: no restart), TIMEOUT_S (transport.timeout_s: the silence after which a peer is lost, 10),
# LIMIT (seconds each run may take, 3600). Endpoints are ipc:// sockets in a temporary folder, so
# the runs collide with nothing on the loopback ports. Metrics lines every 10 rounds (run.log_every)
# let the kill land within a few rounds of AT; they change no result.
set -euo pipefail
EPOCHS=${1:-15}
[[ $# -gt 0 ]] && shift
GOSSIP=${GOSSIP:-build/src/gossip}
CONFIG=${CONFIG:-configs/ring8_deepsqueeze.toml}
VICTIM=${VICTIM:-3}
AT=${AT:-0.3}
REJOIN_AT=${REJOIN_AT:-}
TIMEOUT_S=${TIMEOUT_S:-10}
LIMIT=${LIMIT:-3600}
work=$(mktemp -d /tmp/peer-loss-check.XXXXXX)
echo "peer-loss-check: $EPOCHS epochs, rank $VICTIM killed at $AT of the run; files in $work"
common=(--config "$CONFIG" --set "topology.file=\"ring:8,endpoint=ipc://$work/p-{rank}.sock\""
  --set "run.epochs=$EPOCHS" --set transport.on_peer_loss=continue
  --set "transport.timeout_s=$TIMEOUT_S" --set run.checkpoint_every=0 --set run.log_every=10 "$@")

# The epoch of the newest metrics line of a rank, 0 before the first.
epoch_of() {
  local f="$1/metrics-$2.jsonl"
  [[ -s $f ]] || { echo 0; return; }
  tail -n 1 "$f" | grep -o '"epoch":[0-9.e+-]*' | cut -d: -f2 || echo 0
}

# run NAME KILL(0|1): one launch, progress every 15 s; with KILL=1 the victim gets SIGKILL once
# rank 0 has passed AT of the epochs (the first rank other than the victim if that is 0).
run() {
  local name=$1 do_kill=$2 out="$work/$1" watch=0 killed=0 start=$SECONDS rejoined=0
  [[ $VICTIM == 0 ]] && watch=1
  timeout "$LIMIT" "$GOSSIP" launch "${common[@]}" --set "run.output=\"$out\"" \
    >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$! last=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.5
    local e
    e=$(epoch_of "$out" "$watch")
    if ((do_kill && !killed)) && awk -v e="$e" -v at="$AT" -v n="$EPOCHS" 'BEGIN { exit !(e >= at * n) }'; then
      # The victim: the child of this launch whose environment says GOSSIP_RANK=VICTIM.
      local p
      for p in $(pgrep -P "$(pgrep -P "$pid" || echo "$pid")" 2>/dev/null) $(pgrep -P "$pid"); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "GOSSIP_RANK=$VICTIM"; then
          # What a restart needs: its command line and environment (the launch nonce).
          cp "/proc/$p/cmdline" "$work/victim.cmdline"
          cp "/proc/$p/environ" "$work/victim.environ"
          kill -KILL "$p" && killed=1
          echo "  $name: SIGKILL to rank $VICTIM (pid $p) at epoch $e"
          break
        fi
      done
    fi
    if ((killed && !rejoined)) && [[ -n $REJOIN_AT ]] &&
      awk -v e="$e" -v at="$REJOIN_AT" -v n="$EPOCHS" 'BEGIN { exit !(e >= at * n) }'; then
      local -a argv env
      mapfile -d '' -t argv <"$work/victim.cmdline"
      mapfile -d '' -t env <"$work/victim.environ"
      env -i "${env[@]}" "${argv[@]}" --rejoin >"$work/rejoin.log" 2>&1 &
      rejoined=1
      echo "  $name: rank $VICTIM restarted with --rejoin at epoch $e (log $work/rejoin.log)"
    fi
    if ((SECONDS - last >= 15)); then
      echo "  $name: epoch $e / $EPOCHS, $((SECONDS - start)) s"
      last=$SECONDS
    fi
  done
  local rc=0
  wait "$pid" || rc=$?
  echo "  $name: exit $rc after $((SECONDS - start)) s"
  if ((rc != 0)); then
    tail -n 20 "$work/$name.err"
    return 1
  fi
  ((do_kill == 0 || killed == 1)) || { echo "  $name: the victim was never found"; return 1; }
  if ((rejoined)); then
    wait || true
    grep -h "rejoined at round\|error" "$work/rejoin.log" | sed 's/^/  rejoin: /'
  fi
}

run undisturbed 0
run lost 1
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
a = json.load(open(f"{w}/undisturbed/summary.json"))
b = json.load(open(f"{w}/lost/summary.json"))
print(f"codec {a['codec']}, {a['epochs']} epochs, {a['rounds']} rounds")
for name, j in (("undisturbed", a), ("one peer lost", b)):
    gone = ", ".join(f"rank {d['rank']} from round {d['round']}"
                     + (f", back from round {d['back']}" if "back" in d else "")
                     for d in j["departures"]) or "none"
    print(f"{name:14s} peers finished {j['peers_finished']}, departures: {gone}; "
          f"test accuracy mean {j['test_accuracy_mean']:.4f}, averaged model "
          f"{j['test_accuracy_avg_model']:.4f}")
d = (b["test_accuracy_avg_model"] - a["test_accuracy_avg_model"]) * 100
print(f"averaged model: {d:+.2f} points against the undisturbed run")
PY
