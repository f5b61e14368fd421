#include "gossip/drops.hpp"

#include <fmt/core.h>

namespace gossip::net {

std::string_view drop_reason_name(DropReason r) {
  switch (r) {
    case DropReason::not_a_peer:
      return "not a peer";
    case DropReason::bad_parts:
      return "bad message parts";
    case DropReason::header_size:
      return "bad header size";
    case DropReason::bad_magic:
      return "bad magic";
    case DropReason::bad_version:
      return "bad version";
    case DropReason::bad_checksum:
      return "bad checksum";
    case DropReason::bad_kind:
      return "bad kind";
    case DropReason::bad_length:
      return "length not what arrived";
    case DropReason::too_long:
      return "over the length limit";
    case DropReason::wrong_session:
      return "wrong session";
    case DropReason::wrong_sender:
      return "wrong sender";
    case DropReason::not_linked:
      return "not linked";
    case DropReason::wrong_receiver:
      return "wrong receiver";
    case DropReason::bad_hello:
      return "bad hello";
    case DropReason::before_hello:
      return "before hello";
    case DropReason::stale:
      return "stale";
    case DropReason::duplicate:
      return "duplicate";
    case DropReason::too_far_ahead:
      return "too far ahead";
    case DropReason::not_neighbor:
      return "not a neighbour";
    case DropReason::wrong_ring_sender:
      return "wrong ring sender";
    case DropReason::bad_credit:
      return "bad credit";
    case DropReason::bad_stop:
      return "bad stop_in";
    case DropReason::bad_control:
      return "bad control";
    case DropReason::handshake_failed:
      return "handshake failed";
  }
  return "unknown";
}

std::string DropTally::summary() const {
  std::string out;
  for (std::size_t i = 0; i < kDropReasonCount; ++i) {
    if (by_reason[i] == 0) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", by_reason[i], drop_reason_name(static_cast<DropReason>(i)));
  }
  return out;
}

}  // namespace gossip::net
