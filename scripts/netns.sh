#!/usr/bin/env bash
# Real kernel shaping for one machine: N network namespaces, one per peer, joined through veth
# pairs to a bridge in a hub namespace, with a tbf token bucket on both ends of each peer's veth:
# the peer's side shapes its uplink, the hub's side its downlink, so each peer has a NIC of the
# given bandwidth whatever its number of neighbours (the model of transport.uplink_mbit and
# downlink_mbit, docs/transport.md). Latency stays in the transport (transport.latency_ms): netem
# does not work in namespaces on every kernel. Peer r has the address 10.77.1.r (r < 256) inside
# its namespace gsp-TAG-r; nothing is routed outside the namespaces. Needs root and iproute2.
# TCP in the peers' namespaces uses reno (NETNS_TCP_CC=NAME for another of the host's
# net.ipv4.tcp_allowed_congestion_control, the only ones a namespace may choose), whatever the
# host's net.ipv4.tcp_congestion_control: with BBR, this machine's, the flows of a ring share
# the buckets so unevenly that its rounds took 1.4-1.5x the model's time, against 1.07x with
# reno or cubic (docs/BENCHMARKS.md, "The kernel's shaping against the model").
#
# Usage: scripts/netns.sh up TAG N MBIT     create (MBIT 0: no shaping)
#        scripts/netns.sh down TAG N        kill what still runs in them (SIGKILL), wait for it
#                                           (up to 10 s) and delete them (also what `up` leaves
#                                           after a failure)
#        scripts/netns.sh check             exit 0 when namespaces, veth, bridge and tbf work here
#        scripts/netns.sh exec TAG RANK CMD...   run CMD in peer RANK's namespace
# TAG: letters and digits, at most 8 (names stay within the kernel's 15-character limit); one
# per set of namespaces that exist at the same time (scripts/sweep.sh uses s<its pid>): `up`
# refuses a tag whose namespaces exist already.
set -euo pipefail

die() { echo "netns: $*" >&2; exit 2; }
tag_ok() { [[ $1 =~ ^[A-Za-z0-9]{1,8}$ ]] || die "tag '$1' must be 1 to 8 letters or digits"; }
count_ok() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 256)) || die "peer count '$1' must be 1 to 256"; }

names() {  # TAG N: the namespaces of a set that exist now
  local r
  for ((r = 0; r < $2; ++r)); do [[ ! -e /run/netns/gsp-$1-$r ]] || echo "gsp-$1-$r"; done
  [[ ! -e /run/netns/gsp-$1-hub ]] || echo "gsp-$1-hub"
}

down() {
  local tag=$1 n=$2 ns pids i
  # A namespace lives on, nameless, while a process runs in it: no process is left in them.
  for ((i = 0; i < 100; ++i)); do
    pids=$(for ns in $(names "$tag" "$n"); do ip netns pids "$ns" 2>/dev/null; done)
    [[ -n $pids ]] || break
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  [[ -z $pids ]] || echo "netns: processes $pids still run in gsp-$tag-*; deleting anyway" >&2
  for ns in $(names "$tag" "$n"); do ip netns del "$ns" 2>/dev/null || true; done
}

tbf() {  # NAMESPACE DEVICE MBIT: a token bucket of MBIT on the device's egress
  local burst
  # The bucket holds 10 ms of traffic (at least 64 KiB): at 1 Mbit/s a full-size TSO segment
  # must still fit, and at 1400 Mbit/s the kernel's timer granularity must not cap the rate.
  burst=$(($3 * 1000000 / 8 / 100))
  ((burst >= 65536)) || burst=65536
  ip -n "$1" link set "$2" gso_max_size 65536 2>/dev/null || true
  tc -n "$1" qdisc add dev "$2" root tbf rate "${3}mbit" burst "$burst" latency 2s
}

up() {
  local tag=$1 n=$2 mbit=$3 r hub="gsp-$1-hub" cc=${NETNS_TCP_CC:-reno}
  [[ $mbit =~ ^[0-9]+$ ]] || die "bandwidth '$mbit' must be a whole number of Mbit/s"
  local allowed
  allowed=$(</proc/sys/net/ipv4/tcp_allowed_congestion_control)
  [[ " $allowed " == *" $cc "* ]] ||
    die "NETNS_TCP_CC '$cc' is not one a namespace may choose here (net.ipv4.tcp_allowed_congestion_control: $allowed)"
  # Another set's (or a killed run's) namespaces: neither used nor, on a failure, deleted here.
  [[ -z $(names "$tag" "$n") ]] ||
    die "namespaces gsp-$tag-* exist already (in use, or left over: scripts/netns.sh down $tag $n)"
  trap 'down "$tag" "$n"' ERR
  ip netns add "$hub"
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" link set br0 up
  for ((r = 0; r < n; ++r)); do
    local ns="gsp-$tag-$r"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv4.tcp_congestion_control="$cc"
    ip -n "$hub" link add "p$r" type veth peer name nic netns "$ns"
    ip -n "$hub" link set "p$r" master br0
    ip -n "$hub" link set "p$r" up
    ip -n "$ns" addr add "10.77.1.$r/16" dev nic
    ip -n "$ns" link set nic up
    if ((mbit > 0)); then
      tbf "$ns" nic "$mbit"      # uplink
      tbf "$hub" "p$r" "$mbit"   # downlink
    fi
  done
  trap - ERR
}

case ${1-} in
  up) (($# == 4)) || die "usage: up TAG N MBIT"; tag_ok "$2"; count_ok "$3"; up "$2" "$3" "$4" ;;
  down) (($# == 3)) || die "usage: down TAG N"; tag_ok "$2"; count_ok "$3"; down "$2" "$3" ;;
  exec)
    (($# >= 4)) || die "usage: exec TAG RANK CMD..."
    tag_ok "$2"
    [[ $3 =~ ^[0-9]+$ ]] || die "rank '$3' is not a number"
    ns="gsp-$2-$3"
    shift 3
    exec ip netns exec "$ns" "$@" ;;
  check)
    [[ $(id -u) == 0 ]] || { echo "netns: needs root" >&2; exit 1; }
    command -v ip >/dev/null && command -v tc >/dev/null || { echo "netns: needs iproute2 (ip, tc)" >&2; exit 1; }
    t=c$$  # at most 8 characters: pids stay below 2^22
    if ! (up "$t" 2 10) 2>/dev/null; then
      down "$t" 2
      echo "netns: cannot create namespaces, veth pairs, a bridge or tbf here" >&2
      exit 1
    fi
    # 1.25 MB from peer 0 to peer 1 through 10 Mbit/s NICs: about 1 s if the buckets shape.
    secs=$(ip netns exec "gsp-$t-1" /usr/bin/python3 -c '
import socket, subprocess, sys, time
srv = socket.create_server(("10.77.1.1", 29999))
srv.settimeout(10)
client = subprocess.Popen(["ip", "netns", "exec", sys.argv[1], "/usr/bin/python3", "-c",
    "import socket; s = socket.create_connection((\"10.77.1.1\", 29999), timeout=10); "
    "s.sendall(bytes(1250000)); s.close()"])
conn, _ = srv.accept()
conn.settimeout(10)
start, got = time.monotonic(), 0
while got < 1250000:
    b = conn.recv(1 << 16)
    if not b:
        break
    got += len(b)
client.wait(10)
print(f"{time.monotonic() - start:.2f}" if got == 1250000 else "short")
' "gsp-$t-0" 2>/dev/null) || secs=failed
    down "$t" 2
    [[ $secs =~ ^[0-9.]+$ ]] || { echo "netns: 10.77.1.0 could not send to 10.77.1.1 ($secs)" >&2; exit 1; }
    /usr/bin/python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 else 1)" "$secs" ||
      { echo "netns: 1.25 MB took $secs s at 10 Mbit/s: tbf does not shape here" >&2; exit 1; }
    echo "netns: ok (1.25 MB through a 10 Mbit/s NIC in $secs s; 1.0 s expected)"
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
