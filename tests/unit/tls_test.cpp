// TLS 1.3 with the site's CA: mutual authentication, and the resumption
// that spares every later connection to the same peer the certificates
// and signatures, without losing who the peer is.
#include <gtest/gtest.h>

#include <optional>
#include <thread>
#include <vector>

#include "net/tls.hpp"
#include "support.hpp"

using namespace cm;
using namespace cm::net;
using cm::test::TempDir;

namespace {

std::shared_ptr<TlsContext> context(const TempDir& d, const std::string& name) {
  auto c = TlsContext::load(TlsFiles{d / "ca.crt", d / (name + ".crt"), d / (name + ".key")});
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? *c : nullptr;
}

// 127.0.0.1, a port the kernel picks.
Endpoint loopback_any_port() {
  Endpoint e;
  e.addr = *parse_address("127.0.0.1");
  return e;
}

struct Seen {
  std::string peer;
  bool resumed = false;
};

// The server's side of one exchange: accepts a connection, reads "ping",
// answers "pong"; who it was, and whether the session was resumed.
std::optional<Seen> answer(Listener& l, const std::shared_ptr<TlsContext>& ctx) {
  auto fd = l.accept(5000);
  if (!fd.ok() || !*fd)
    return std::nullopt;
  auto s = TlsStream::accept(ctx, std::move(**fd), 5000);
  if (!s.ok())
    return std::nullopt;
  char buf[4];
  auto n = (*s)->read(buf, sizeof buf);
  if (!n.ok() || *n != 4 || !(*s)->write("pong", 4).ok())
    return std::nullopt;
  Seen seen{(*s)->peer(), (*s)->resumed()};
  (*s)->shutdown();
  return seen;
}

// The client's side: connects, sends "ping", reads the answer (and with it
// the server's ticket, kept for the next connection when the stream goes).
std::optional<Seen> ping(const std::shared_ptr<TlsContext>& ctx, const Endpoint& at) {
  auto s = TlsStream::connect(ctx, at, 5000);
  if (!s.ok()) {
    ADD_FAILURE() << s.error().message;
    return std::nullopt;
  }
  char buf[4];
  if (!(*s)->write("ping", 4).ok())
    return std::nullopt;
  auto n = (*s)->read(buf, sizeof buf);
  if (!n.ok() || *n != 4)
    return std::nullopt;
  return Seen{(*s)->peer(), (*s)->resumed()};
}

}  // namespace

TEST(Tls, ASecondConnectionResumesAndBothSidesStillKnowWhoIsThere) {
  TempDir d;
  ASSERT_TRUE(make_ca(d.path(), "site").ok());
  ASSERT_TRUE(issue_cert(d.path(), "manager", d / "manager").ok());
  ASSERT_TRUE(issue_cert(d.path(), "l1", d / "l1").ok());
  auto server = context(d, "manager");
  auto client = context(d, "l1");
  ASSERT_TRUE(server && client);
  auto listener = Listener::open(loopback_any_port());
  ASSERT_TRUE(listener.ok()) << listener.error().message;

  const int kConnections = 3;
  std::vector<Seen> at_server;
  std::thread t([&] {
    for (int i = 0; i < kConnections; i++) {
      auto seen = answer(*listener, server);
      if (!seen)
        return;
      at_server.push_back(*seen);
    }
  });
  std::vector<Seen> at_client;
  for (int i = 0; i < kConnections; i++) {
    auto seen = ping(client, listener->local());
    if (!seen)
      break;
    at_client.push_back(*seen);
  }
  t.join();
  ASSERT_EQ(at_client.size(), size_t{kConnections});
  ASSERT_EQ(at_server.size(), size_t{kConnections});
  for (int i = 0; i < kConnections; i++) {
    EXPECT_EQ(at_client[i].peer, "manager") << i;
    EXPECT_EQ(at_server[i].peer, "l1") << i;
    // The first handshake is a full one; each later one resumes.
    EXPECT_EQ(at_client[i].resumed, i > 0) << i;
    EXPECT_EQ(at_server[i].resumed, i > 0) << i;
  }
}

TEST(Tls, ASessionIsNotResumedWithAnotherPeer) {
  TempDir d;
  ASSERT_TRUE(make_ca(d.path(), "site").ok());
  for (const char* n : {"a", "b", "c"})
    ASSERT_TRUE(issue_cert(d.path(), n, d / n).ok());
  auto ca = context(d, "a"), cb = context(d, "b"), client = context(d, "c");
  ASSERT_TRUE(ca && cb && client);
  auto la = Listener::open(loopback_any_port());
  auto lb = Listener::open(loopback_any_port());
  ASSERT_TRUE(la.ok() && lb.ok());
  std::optional<Seen> sa, sb;
  std::thread ta([&] { sa = answer(*la, ca); });
  auto first = ping(client, la->local());
  ta.join();
  std::thread tb([&] { sb = answer(*lb, cb); });
  auto seen = ping(client, lb->local());
  tb.join();
  ASSERT_TRUE(first && seen && sa && sb);
  EXPECT_EQ(seen->peer, "b");
  EXPECT_FALSE(seen->resumed);
  EXPECT_EQ(sa->peer, "c");
  EXPECT_EQ(sb->peer, "c");
}
