// TLS 1.3 with the site's CA: mutual authentication, and the resumption
// that spares every later connection to the same peer the certificates
// and signatures, without losing who the peer is.
#include <gtest/gtest.h>

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
  Endpoint at = listener->local();

  const int kConnections = 3;
  std::vector<Seen> at_server;
  std::thread t([&] {
    for (int i = 0; i < kConnections; i++) {
      auto fd = listener->accept(5000);
      if (!fd.ok() || !*fd)
        return;
      auto s = TlsStream::accept(server, std::move(**fd), 5000);
      if (!s.ok())
        return;
      char buf[4];
      auto n = (*s)->read(buf, sizeof buf);
      if (!n.ok() || *n != 4)
        return;
      if (!(*s)->write("pong", 4).ok())
        return;
      at_server.push_back(Seen{(*s)->peer(), (*s)->resumed()});
      (*s)->shutdown();
    }
  });
  std::vector<Seen> at_client;
  for (int i = 0; i < kConnections; i++) {
    auto s = TlsStream::connect(client, at, 5000);
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_TRUE((*s)->write("ping", 4).ok());
    // Reading the answer reads the server's ticket too.
    char buf[4];
    auto n = (*s)->read(buf, sizeof buf);
    ASSERT_TRUE(n.ok() && *n == 4);
    at_client.push_back(Seen{(*s)->peer(), (*s)->resumed()});
  }
  t.join();
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
  auto serve_one = [](Listener& l, std::shared_ptr<TlsContext> ctx, Seen& seen) {
    auto fd = l.accept(5000);
    if (!fd.ok() || !*fd)
      return;
    auto s = TlsStream::accept(ctx, std::move(**fd), 5000);
    if (!s.ok())
      return;
    char buf[4];
    if (!(*s)->read(buf, sizeof buf).ok() || !(*s)->write("pong", 4).ok())
      return;
    seen = Seen{(*s)->peer(), (*s)->resumed()};
  };
  Seen sa, sb;
  std::thread ta([&] { serve_one(*la, ca, sa); });
  {
    auto s = TlsStream::connect(client, la->local(), 5000);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->write("ping", 4).ok());
    char buf[4];
    ASSERT_TRUE((*s)->read(buf, sizeof buf).ok());
  }
  ta.join();
  std::thread tb([&] { serve_one(*lb, cb, sb); });
  auto s = TlsStream::connect(client, lb->local(), 5000);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->write("ping", 4).ok());
  char buf[4];
  ASSERT_TRUE((*s)->read(buf, sizeof buf).ok());
  tb.join();
  EXPECT_EQ((*s)->peer(), "b");
  EXPECT_FALSE((*s)->resumed());
  EXPECT_EQ(sa.peer, "c");
  EXPECT_EQ(sb.peer, "c");
}
