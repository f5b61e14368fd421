#include "src/runtime/hosts.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>

namespace gossip::runtime {

std::set<std::string> this_host_names() {
  std::set<std::string> names;
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) == 0 && host[0] != '\0') {
    const std::string h(host.data());
    names.insert(h);
    names.insert(h.substr(0, h.find('.')));
  }
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr) continue;
      std::array<char, INET6_ADDRSTRLEN> text{};
      const void* raw = nullptr;
      if (a->ifa_addr->sa_family == AF_INET)
        raw = &reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr;
      else if (a->ifa_addr->sa_family == AF_INET6)
        raw = &reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr;
      if (raw != nullptr && ::inet_ntop(a->ifa_addr->sa_family, raw, text.data(), text.size()))
        names.insert(text.data());
    }
    ::freeifaddrs(list);
  }
  return names;
}

bool on_this_host(const std::string& endpoint, const std::set<std::string>& names) {
  if (endpoint.starts_with("ipc://")) return true;
  const std::string host = topology::endpoint_host(endpoint);
  return host.starts_with("127.") || host == "localhost" || host == "::1" ||
         (!host.empty() && names.contains(host));
}

int peers_on_host_of(const topology::Topology& topo, int rank, const std::set<std::string>& names) {
  const auto host = [&](const std::string& endpoint) {
    return on_this_host(endpoint, names) ? std::string("(this host)")
                                         : topology::endpoint_host(endpoint);
  };
  const std::string mine = host(topo.peers.at(static_cast<std::size_t>(rank)).endpoint);
  return static_cast<int>(std::count_if(topo.peers.begin(), topo.peers.end(),
                                        [&](const auto& p) { return host(p.endpoint) == mine; }));
}

}  // namespace gossip::runtime
