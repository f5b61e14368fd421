#pragma once
// Settings shared by every Transport implementation. The run config maps onto this struct.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "gossip/link_emulation.hpp"

namespace gossip::net {

// What a neighbour that goes silent past the timeout does to the run (docs/transport.md, "Peers
// that leave"). stop: the call fails with a TransportError naming it (the default).
// continue_run: the remaining peers agree on the round from which it is gone and mix without it.
enum class PeerLoss : std::uint8_t { stop, continue_run };

struct TransportOptions {
  // A neighbour whose message of the current round has not arrived this long after the call
  // started ends the run with a TransportError naming it.
  std::chrono::milliseconds timeout{30000};
  // With continue_run a neighbour is lost once nothing at all came from it for `timeout` (a
  // waiting peer tells its neighbours it is alive); static topologies, no receive window, no
  // exchange lag.
  PeerLoss on_peer_loss = PeerLoss::stop;
  // This peer restarted after it was lost (continue_run only): its hello asks the others to take
  // it back, and it starts from the state a neighbour sends it (Transport::receive_state) instead
  // of waiting for a start-up handshake with every link.
  bool rejoin = false;
  // How long the start-up handshake waits for every linked peer (they start at different times).
  std::chrono::milliseconds connect_timeout{60000};
  // Asked a few times a second while the start-up handshake waits; true (the user pressed Ctrl-C)
  // ends the wait with TransportCancelled instead of waiting out connect_timeout.
  std::function<bool()> cancelled;
  // Called at least every `poll_interval` while an exchange or ring step waits. It may throw to
  // abandon the round (the Python package turns a second Ctrl-C into KeyboardInterrupt this way):
  // the transport then stops all I/O that could still read the caller's memory and is unusable
  // afterwards, as after any error. It may call request_stop().
  std::function<void()> poll;
  std::chrono::milliseconds poll_interval{100};
  // Hash of the run settings (algorithm, codec, model, ...): peers that disagree refuse to start.
  std::uint64_t run_hash = 0;
  // Drawn at random by each `gossip launch` (GOSSIP_RUN_NONCE) and sent in the hello: a peer with
  // another one is a leftover process of an earlier launch of the same run, and is refused by
  // name. 0 (peers started by hand) accepts only 0. Also folded into the session when non-zero,
  // so a leftover's data frames are dropped as another session's.
  std::uint64_t run_nonce = 0;
  // Largest payload a peer expects to receive (the codec's wire size). 0: no limit. Frames with a
  // longer payload are rejected; the ZeroMQ transport also sets ZMQ_MAXMSGSIZE from it.
  std::uint64_t max_payload_bytes = 0;
  // Also link to rank-1 and rank+1 (mod n) so ring_step works on any topology.
  bool ring_links = true;
  // The network model (link_emulation.hpp): per-link latency and bandwidth, this peer's NIC.
  LinkEmulation link;
  // Virtual time (virtual_clock.hpp; in-process peers only): nobody waits for the network model,
  // each transport keeps a VirtualClock (Transport::virtual_clock()) that the model moves
  // instead. virtual_cpu: the peer thread's CPU time moves it too; false leaves work to the
  // caller (VirtualClock::advance).
  bool virtual_time = false;
  bool virtual_cpu = true;
  // 0: neighbours send their exchange payload at once (lowest latency). k > 0: a peer asks (a
  // credit frame) for at most k neighbour payloads at a time, so exchange_each() holds at most k
  // received messages whatever the degree. All peers of a run must agree (checked at handshake).
  int receive_window = 0;
  // Overlapped exchanges (an algorithm with staleness τ = exchange_lag; transport.md, "Overlapped
  // exchanges"): a neighbour may be up to 1 + τ exchanges ahead, so more of its frames are kept.
  // Known at construction because neighbours run τ exchanges ahead before our first call (the
  // ZeroMQ handshake already reads their frames). Not with a receive window. Every peer of a run
  // uses the same value (the runtime's settings hash covers the algorithm's staleness).
  std::uint32_t exchange_lag = 0;
  // Round numbers between exchanges: an algorithm with local steps H exchanges in rounds H − 1,
  // 2H − 1, ...; a neighbour's next exchange is then H rounds past ours, and on a time-varying
  // topology the schedule advances one phase per exchange (round / H). Known at construction for
  // the reason above: the handshake already sorts neighbours' frames by round. Every peer of a
  // run uses the same value (the settings hash covers the local steps).
  std::uint32_t exchange_interval = 1;
  // Link every pair of peers, whatever the topology's edges (Transport::post / collect need it;
  // the handshake then covers every pair). Set for an algorithm whose registry row needs
  // TopologyNeed::all_pairs (DoubleSqueeze, DGA). Every peer of a run uses the same value.
  bool all_links = false;
  // Direct messages: how many rounds a collect may come after the post of its round (DGA's delay
  // D), so that a peer up to that many rounds ahead has its direct frames kept, not dropped.
  std::uint32_t direct_lag = 0;

  // ZeroMQ only.
  int io_threads = 1;
  // Bounded: close never hangs on a dead peer, yet a peer we refuse at the handshake still gets
  // our hello (and so the reason) when its connection comes up late on a loaded machine.
  std::chrono::milliseconds linger{5000};
  int hwm_messages = 0;                         // 0: derived from max_payload_bytes
  std::chrono::milliseconds heartbeat{1000};    // ZMTP ping interval; 0 disables
  std::size_t zero_copy_min_bytes = 64 * 1024;  // smaller payloads are copied into the message
  // This peer's CURVE secret key (gossip/curve_keys.hpp). Required exactly when the topology has
  // public keys; then every link is encrypted and only the topology's keys are admitted.
  std::optional<std::array<std::uint8_t, 32>> curve_secret_key;
};

}  // namespace gossip::net
