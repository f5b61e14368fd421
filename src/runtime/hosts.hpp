#pragma once
// Which peers of a topology live on this machine, from their endpoints: `gossip launch` starts
// those, and `gossip peer` shares the cores among them (src/threads.hpp).

#include <set>
#include <string>

#include "topology/topology.hpp"

namespace gossip::runtime {

// The names this machine answers to: its host name (and its first label), and the numeric
// addresses of its interfaces (IPv4 dotted, IPv6 without brackets).
std::set<std::string> this_host_names();

// True for ipc://, loopback (127.x, localhost, ::1) and endpoints whose host
// (topology::endpoint_host) is one of `names`.
bool on_this_host(const std::string& endpoint, const std::set<std::string>& names);

// How many peers of `topo` share the host of `rank`: those on this host when its endpoint is
// (by `names`), else those whose endpoint names the same host.
int peers_on_host_of(const topology::Topology& topo, int rank, const std::set<std::string>& names);

}  // namespace gossip::runtime
