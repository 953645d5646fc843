#include "net/udp.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cm::net {

std::string Endpoint::host() const {
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &addr, buf, sizeof buf);
  return buf;
}

std::string Endpoint::str() const {
  return host() + ":" + std::to_string(port);
}

Endpoint peer_of(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || sa.sin_family != AF_INET)
    return Endpoint{};
  return Endpoint{sa.sin_addr, ntohs(sa.sin_port)};
}

Result<in_addr> parse_address(const std::string& s) {
  in_addr a{};
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1)
    return Error("not an IPv4 address: '" + s + "'", kExitUsage);
  return a;
}

Result<Endpoint> parse_endpoint(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos)
    return Error("want ADDRESS:PORT, got '" + s + "'", kExitUsage);
  CM_ASSIGN(in_addr a, parse_address(s.substr(0, colon)));
  char* end = nullptr;
  long port = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (end == s.c_str() + colon + 1 || *end != '\0' || port < 1 || port > 65535)
    return Error("bad port in '" + s + "'", kExitUsage);
  return Endpoint{a, static_cast<uint16_t>(port)};
}

bool is_multicast(const in_addr& a) {
  return IN_MULTICAST(ntohl(a.s_addr));
}

namespace {
Result<Fd> make_socket() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sys_error("cannot create", "UDP socket", errno);
  return Fd(fd);
}

Error sock_error(const char* what, const std::string& where, int e) {
  return sys_error(what, where, e);
}
}  // namespace

Result<UdpSocket> UdpSocket::open(const Endpoint& channel, const in_addr& interface, int ttl) {
  CM_ASSIGN(Fd fd, make_socket());
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(channel.port);
  sa.sin_addr.s_addr = is_multicast(channel.addr) ? htonl(INADDR_ANY) : interface.s_addr;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return sock_error("cannot bind", channel.str(), errno);
  if (is_multicast(channel.addr)) {
    ip_mreq mreq{};
    mreq.imr_multiaddr = channel.addr;
    mreq.imr_interface = interface;
    if (::setsockopt(fd.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
      // ENODEV: the group is fine, the interface address is not this host's.
      if (errno == ENODEV) {
        char addr[INET_ADDRSTRLEN];
        ::inet_ntop(AF_INET, &interface, addr, sizeof addr);
        return Error("cannot join multicast group '" + channel.str() + "' on --interface " + addr +
                         ": no interface of this host has that address",
                     kExitFailure);
      }
      return sock_error("cannot join multicast group", channel.str(), errno);
    }
  }
  if (::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_IF, &interface, sizeof interface) != 0)
    return sock_error("cannot send multicast through", Endpoint{interface, 0}.str(), errno);
  unsigned char t = static_cast<unsigned char>(ttl), loop = 1;
  ::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_TTL, &t, sizeof t);
  ::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
  UdpSocket s;
  s.fd_ = std::move(fd);
  return s;
}

Result<UdpSocket> UdpSocket::open_unicast(const in_addr& interface, uint16_t port) {
  CM_ASSIGN(Fd fd, make_socket());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr = interface;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return sock_error("cannot bind", Endpoint{interface, port}.str(), errno);
  ::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_IF, &interface, sizeof interface);
  UdpSocket s;
  s.fd_ = std::move(fd);
  return s;
}

Status UdpSocket::send_to(const Endpoint& to, std::string_view data) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(to.port);
  sa.sin_addr = to.addr;
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    if (n >= 0)
      return {};
    if (errno == EINTR)
      continue;
    // A full socket buffer loses the datagram, as the network might.
    if (errno == EAGAIN || errno == ENOBUFS)
      return {};
    return sock_error("cannot send to", to.str(), errno);
  }
}

Result<std::optional<Datagram>> UdpSocket::receive() {
  char buf[65536];
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  for (;;) {
    ssize_t n = ::recvfrom(fd_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&sa), &len);
    if (n >= 0)
      return std::optional<Datagram>(
          Datagram{std::string(buf, static_cast<size_t>(n)), Endpoint{sa.sin_addr, ntohs(sa.sin_port)}});
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN)
      return std::optional<Datagram>();
    return sock_error("cannot receive on", local().str(), errno);
  }
}

uint32_t interface_mtu(const in_addr& a) {
  uint32_t mtu = 1500;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0)
    return mtu;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr != a.s_addr)
      continue;
    Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq r{};
    std::snprintf(r.ifr_name, sizeof r.ifr_name, "%s", i->ifa_name);
    if (fd.valid() && ::ioctl(fd.get(), SIOCGIFMTU, &r) == 0 && r.ifr_mtu >= 576)
      mtu = static_cast<uint32_t>(r.ifr_mtu);
    break;
  }
  ::freeifaddrs(list);
  return mtu;
}

Endpoint UdpSocket::local() const {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  return Endpoint{sa.sin_addr, ntohs(sa.sin_port)};
}

}  // namespace cm::net
