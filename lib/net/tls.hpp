// TLS 1.3 with mutual authentication against a site CA (OpenSSL 3), over
// TCP: every peer presents a certificate the site's CA signed, and its
// name (the certificate's CN) is who it is. Streams have idle timeouts, so
// a peer that vanishes or whose link goes down is noticed.
#pragma once

#include <netinet/in.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "net/udp.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace cm::net {

struct TlsFiles {
  std::string ca, cert, key;  // PEM
};

class TlsContext {
 public:
  // One context serves both sides (it accepts and it connects).
  static Result<std::shared_ptr<TlsContext>> load(const TlsFiles& files);
  ~TlsContext();
  SSL_CTX* get() const { return ctx_; }
  const std::string& name() const { return name_; }  // our own CN

  // The last session with each peer we connected to, to resume: a
  // resumed handshake sends no certificates and makes no signatures, and
  // the agents and the manager open a connection for every message.
  SSL_SESSION* take_session(const std::string& peer);          // owned by the caller; may be null
  void keep_session(const std::string& peer, SSL_SESSION* s);  // takes it

 private:
  SSL_CTX* ctx_ = nullptr;
  std::string name_;
  std::mutex mu_;
  std::map<std::string, SSL_SESSION*> sessions_;
};

class TlsStream : public Reader, public Writer {
 public:
  using Writer::write;
  static Result<std::unique_ptr<TlsStream>> connect(const std::shared_ptr<TlsContext>& ctx,
                                                    const Endpoint& to, int timeout_ms);
  static Result<std::unique_ptr<TlsStream>> accept(const std::shared_ptr<TlsContext>& ctx, Fd fd,
                                                   int timeout_ms);
  ~TlsStream() override;

  Result<size_t> read(void* buf, size_t n) override;  // 0 at a clean close
  Status write(const void* p, size_t n) override;
  const std::string& name() const override { return where_; }
  const std::string& peer() const { return peer_; }  // the peer's CN
  bool resumed() const;                              // the handshake resumed a session
  // Reads and writes fail after this long without progress.
  void set_timeout(int ms);
  void shutdown();
  // From another thread: a blocked read or write fails at once.
  void abort();

 private:
  TlsStream() = default;
  Status handshake(bool server, int timeout_ms);
  std::shared_ptr<TlsContext> ctx_;
  Fd fd_;
  SSL* ssl_ = nullptr;
  bool client_ = false;
  std::string peer_, where_;
  int timeout_ms_ = 30000;
};

// A listening TCP socket.
class Listener {
 public:
  static Result<Listener> open(const Endpoint& at);
  // A connection, or nullopt after timeout_ms.
  Result<std::optional<Fd>> accept(int timeout_ms);
  int fd() const { return fd_.get(); }
  Endpoint local() const;

 private:
  Fd fd_;
};

// Making a site's keys: a CA, and certificates it signs (Ed25519).
Status make_ca(const std::string& dir, const std::string& name);
Status issue_cert(const std::string& dir, const std::string& name, const std::string& out_prefix);

}  // namespace cm::net
