// UDP sockets for the LAN protocols: a multicast group (or a list of
// unicast peers) on one interface, non-blocking, for a poll() loop.
//
// Lessons from the namespace lab: a namespace has no default route, so
// every sending socket sets IP_MULTICAST_IF; TTL 1 keeps control traffic
// on the segment; loopback is on, so processes on one host (the loopback
// mode, and tests) hear each other; receivers ignore their own messages.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::net {

struct Endpoint {
  in_addr addr{};
  uint16_t port = 0;
  std::string str() const;   // "10.0.0.1:7800"
  std::string host() const;  // "10.0.0.1"
  bool operator==(const Endpoint& o) const { return addr.s_addr == o.addr.s_addr && port == o.port; }
};

// "239.1.2.3:7000" (or a host address for peers).
Result<Endpoint> parse_endpoint(const std::string& s);
Result<in_addr> parse_address(const std::string& s);
// The peer of a connected IPv4 socket (0.0.0.0:0 when it has none).
Endpoint peer_of(int fd);
bool is_multicast(const in_addr& a);
// The MTU of the interface holding address `a`; 1500 when none is found.
uint32_t interface_mtu(const in_addr& a);

struct Datagram {
  std::string data;
  Endpoint from;
};

class UdpSocket {
 public:
  // Binds `channel.port` (address reuse on, so several processes on one
  // host share it), joins `channel.addr` when it is a multicast group, and
  // sends multicast through `interface`.
  static Result<UdpSocket> open(const Endpoint& channel, const in_addr& interface, int ttl = 1);
  // A socket on an ephemeral port of `interface`, for unicast replies.
  static Result<UdpSocket> open_unicast(const in_addr& interface, uint16_t port = 0);

  Status send_to(const Endpoint& to, std::string_view data);
  // One datagram, or nullopt when none is waiting.
  Result<std::optional<Datagram>> receive();
  int fd() const { return fd_.get(); }
  Endpoint local() const;

 private:
  Fd fd_;
};

}  // namespace cm::net
