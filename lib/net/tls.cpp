#include "net/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>

namespace cm::net {

namespace {

constexpr int kNotSentLowat = 64 << 10;

std::string ssl_error() {
  unsigned long e = ERR_get_error();
  if (e == 0)
    return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

std::string cn_of(X509* cert) {
  if (cert == nullptr)
    return {};
  X509_NAME* n = X509_get_subject_name(cert);
  char buf[256] = {0};
  if (X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof buf) < 0)
    return {};
  return buf;
}

void set_timeouts(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  // A peer whose link went down: unacknowledged data fails the socket.
  unsigned int user = static_cast<unsigned int>(ms);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof user);
}

// Small messages go at once (no Nagle delay), and a sender keeps little
// data waiting unsent in the socket: the send buffer grows to 4 MiB, and on
// a chain of leaders relaying at the same rate whatever waits there stays
// there, delaying every byte behind it by the time it takes to send (at
// 200 Mbit/s, 4 MiB is 170 ms per hop). A blocked write waits until the
// backlog is below the mark; what is in flight is not limited.
void tune_stream(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int lowat = kNotSentLowat;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::load(const TlsFiles& f) {
  auto ctx = std::shared_ptr<TlsContext>(new TlsContext());
  ctx->ctx_ = SSL_CTX_new(TLS_method());
  if (ctx->ctx_ == nullptr)
    return Error("TLS: " + ssl_error());
  SSL_CTX_set_min_proto_version(ctx->ctx_, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx->ctx_, TLS1_3_VERSION);
  // A file that is not there or not readable is a file error (exit 1),
  // said as such; OpenSSL's own message for it is a raw error code. What
  // OpenSSL refuses in a file it could read is a security error (exit 4).
  for (const auto& [path, what] : {std::pair{&f.ca, "the CA certificate"},
                                   std::pair{&f.cert, "the certificate"}, std::pair{&f.key, "the key"}})
    if (::access(path->c_str(), R_OK) != 0)
      return sys_error(std::string("cannot read ") + what, *path, errno);
  if (SSL_CTX_load_verify_locations(ctx->ctx_, f.ca.c_str(), nullptr) != 1)
    return Error("cannot load the CA certificate '" + f.ca + "': " + ssl_error(), kExitSecurity);
  if (SSL_CTX_use_certificate_chain_file(ctx->ctx_, f.cert.c_str()) != 1)
    return Error("cannot load the certificate '" + f.cert + "': " + ssl_error(), kExitSecurity);
  if (SSL_CTX_use_PrivateKey_file(ctx->ctx_, f.key.c_str(), SSL_FILETYPE_PEM) != 1)
    return Error("cannot load the key '" + f.key + "': " + ssl_error(), kExitSecurity);
  if (SSL_CTX_check_private_key(ctx->ctx_) != 1)
    return Error("'" + f.key + "' is not the key of '" + f.cert + "'", kExitSecurity);
  // Both sides show a certificate the site's CA signed, or nothing happens.
  SSL_CTX_set_verify(ctx->ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_mode(ctx->ctx_, SSL_MODE_AUTO_RETRY);
  // Records are read from the socket as many at a time as have come (a
  // 256 KiB chunk is 16 records, each otherwise two read(2)s: its header,
  // then its body). Safe here: no caller polls the socket for data
  // OpenSSL may already hold.
  SSL_CTX_set_read_ahead(ctx->ctx_, 1);
  SSL_CTX_set_default_read_buffer_len(ctx->ctx_, 128u << 10);
  // Resumption: one ticket a connection (the default two cost a few
  // hundred bytes more each time), kept by the client side per peer.
  SSL_CTX_set_num_tickets(ctx->ctx_, 1);
  // A resumed session skips the certificate checks: not for longer than
  // ten minutes after the last full handshake.
  SSL_CTX_set_timeout(ctx->ctx_, 600);
  SSL_CTX_set_session_cache_mode(ctx->ctx_, SSL_SESS_CACHE_BOTH | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  // With client certificates OpenSSL resumes only sessions of a named
  // context (the name keeps sessions of other uses of the CA apart).
  static const unsigned char kContext[] = "cm-tls";
  SSL_CTX_set_session_id_context(ctx->ctx_, kContext, sizeof kContext - 1);
  ctx->name_ = cn_of(SSL_CTX_get0_certificate(ctx->ctx_));
  return ctx;
}

TlsContext::~TlsContext() {
  for (auto& [peer, s] : sessions_)
    SSL_SESSION_free(s);
  if (ctx_ != nullptr)
    SSL_CTX_free(ctx_);
}

SSL_SESSION* TlsContext::take_session(const std::string& peer) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = sessions_.find(peer);
  if (it == sessions_.end())
    return nullptr;
  SSL_SESSION* s = it->second;
  sessions_.erase(it);  // a TLS 1.3 ticket is for one use
  return s;
}

void TlsContext::keep_session(const std::string& peer, SSL_SESSION* s) {
  std::lock_guard<std::mutex> g(mu_);
  SSL_SESSION*& slot = sessions_[peer];
  if (slot != nullptr)
    SSL_SESSION_free(slot);
  slot = s;
}

TlsStream::~TlsStream() {
  if (ssl_ == nullptr)
    return;
  // The ticket the server sent (read with its answer) resumes the next
  // connection to the same peer. Kept as a copy: SSL_free() of a
  // connection not shut down cleanly marks its own session not resumable.
  if (client_) {
    SSL_SESSION* s = SSL_get0_session(ssl_);
    if (s != nullptr && SSL_SESSION_is_resumable(s) == 1)
      if (SSL_SESSION* copy = SSL_SESSION_dup(s))
        ctx_->keep_session(where_, copy);
  }
  SSL_free(ssl_);
}

Status TlsStream::handshake(bool server, int timeout_ms) {
  ssl_ = SSL_new(ctx_->get());
  if (ssl_ == nullptr)
    return Error("TLS: " + ssl_error());
  SSL_set_fd(ssl_, fd_.get());
  if (!server) {
    client_ = true;
    if (SSL_SESSION* s = ctx_->take_session(where_)) {
      SSL_set_session(ssl_, s);
      SSL_SESSION_free(s);
    }
  }
  set_timeouts(fd_.get(), timeout_ms);
  int r = server ? SSL_accept(ssl_) : SSL_connect(ssl_);
  if (r != 1) {
    long v = SSL_get_verify_result(ssl_);
    std::string why = v != X509_V_OK ? X509_verify_cert_error_string(v) : ssl_error();
    return Error("TLS handshake with " + where_ + " failed: " + why, kExitSecurity);
  }
  X509* cert = SSL_get1_peer_certificate(ssl_);
  peer_ = cn_of(cert);
  X509_free(cert);
  if (peer_.empty())
    return Error("TLS: " + where_ + " has no name in its certificate", kExitSecurity);
  set_timeouts(fd_.get(), timeout_ms_);
  return {};
}

Result<std::unique_ptr<TlsStream>> TlsStream::connect(const std::shared_ptr<TlsContext>& ctx,
                                                      const Endpoint& to, int timeout_ms) {
  std::unique_ptr<TlsStream> s(new TlsStream());
  s->ctx_ = ctx;
  s->where_ = to.str();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return sys_error("cannot create", "TCP socket", errno);
  s->fd_.reset(fd);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(to.port);
  sa.sin_addr = to.addr;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (errno != EINPROGRESS)
      return sys_error("cannot connect to", to.str(), errno);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, timeout_ms) <= 0)
      return Error("cannot connect to '" + to.str() + "': timed out", kExitFailure);
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      return sys_error("cannot connect to", to.str(), err);
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  tune_stream(fd);
  CM_TRY(s->handshake(false, timeout_ms));
  return s;
}

Result<std::unique_ptr<TlsStream>> TlsStream::accept(const std::shared_ptr<TlsContext>& ctx, Fd fd,
                                                     int timeout_ms) {
  std::unique_ptr<TlsStream> s(new TlsStream());
  s->ctx_ = ctx;
  s->where_ = peer_of(fd.get()).str();
  s->fd_ = std::move(fd);
  tune_stream(s->fd_.get());
  CM_TRY(s->handshake(true, timeout_ms));
  return s;
}

bool TlsStream::resumed() const {
  return SSL_session_reused(ssl_) == 1;
}

void TlsStream::set_timeout(int ms) {
  timeout_ms_ = ms;
  set_timeouts(fd_.get(), ms);
}

Result<size_t> TlsStream::read(void* buf, size_t n) {
  size_t got = 0;
  int r = SSL_read_ex(ssl_, buf, n, &got);
  if (r == 1)
    return got;
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_ZERO_RETURN)
    return size_t{0};
  if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    ERR_clear_error();
    return Error("'" + where_ + "' sent nothing for " + std::to_string(timeout_ms_ / 1000) + " s (timed out)",
                 kExitFailure);
  }
  std::string why = e == SSL_ERROR_SYSCALL && errno != 0 ? std::strerror(errno) : ssl_error();
  // In TLS 1.3 a client hears that its certificate was refused only here.
  if (why.find("alert") != std::string::npos)
    return Error("'" + where_ + "' refused this host (" + why +
                     "): is its certificate signed by the site's CA, and not expired?",
                 kExitSecurity);
  return Error("connection with '" + where_ + "' lost: " + why, kExitFailure);
}

Status TlsStream::write(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    size_t done = 0;
    int r = SSL_write_ex(ssl_, c, n, &done);
    if (r != 1) {
      int e = SSL_get_error(ssl_, r);
      std::string why = e == SSL_ERROR_SYSCALL && errno != 0 ? std::strerror(errno) : ssl_error();
      // A peer that refused our certificate sent an alert, then reset the
      // connection when our first message arrived: the alert says why.
      char probe[256];
      auto alert = read(probe, sizeof probe);
      if (!alert.ok() && alert.error().code == kExitSecurity)
        return alert.error();
      return Error("cannot send to '" + where_ + "': " + why, kExitFailure);
    }
    c += done;
    n -= done;
  }
  return {};
}

void TlsStream::shutdown() {
  if (ssl_ != nullptr)
    SSL_shutdown(ssl_);
}

void TlsStream::abort() {
  ::shutdown(fd_.get(), SHUT_RDWR);
}

Result<Listener> Listener::open(const Endpoint& at) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sys_error("cannot create", "TCP socket", errno);
  Listener l;
  l.fd_.reset(fd);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(at.port);
  sa.sin_addr = at.addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return sys_error("cannot listen on", at.str(), errno);
  if (::listen(fd, 64) != 0)
    return sys_error("cannot listen on", at.str(), errno);
  return l;
}

Result<std::optional<Fd>> Listener::accept(int timeout_ms) {
  pollfd p{fd_.get(), POLLIN, 0};
  int n = ::poll(&p, 1, timeout_ms);
  if (n < 0 && errno != EINTR)
    return sys_error("cannot wait on", local().str(), errno);
  if (n <= 0)
    return std::optional<Fd>();
  int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
      return std::optional<Fd>();
    return sys_error("cannot accept on", local().str(), errno);
  }
  return std::optional<Fd>(Fd(c));
}

Endpoint Listener::local() const {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  return Endpoint{sa.sin_addr, ntohs(sa.sin_port)};
}

// ---- keys and certificates

namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

Status write_pem(const std::string& path, mode_t mode, const std::function<int(FILE*)>& put) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST)
      return Error("'" + path + "' exists; not overwriting it", kExitFailure);
    return sys_error("cannot create", path, errno);
  }
  FILE* f = ::fdopen(fd, "w");
  bool ok = f != nullptr && put(f) == 1;
  ok = ok && std::fflush(f) == 0 && ::fsync(fd) == 0;
  if (f != nullptr)
    std::fclose(f);
  else
    ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Error("cannot write '" + path + "': " + ssl_error());
  }
  return {};
}

Result<std::unique_ptr<X509, X509Free>> make_cert(EVP_PKEY* key, const std::string& name, X509* issuer,
                                                  EVP_PKEY* issuer_key, bool ca) {
  std::unique_ptr<X509, X509Free> x(X509_new());
  X509_set_version(x.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(x.get(), key);
  X509_NAME* n = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : n);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer != nullptr ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (ext != nullptr) {
      X509_add_ext(x.get(), ext, -1);
      X509_EXTENSION_free(ext);
    }
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  if (!ca)
    add(NID_ext_key_usage, "serverAuth,clientAuth");
  add(NID_subject_key_identifier, "hash");
  if (X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, nullptr) == 0)
    return Error("cannot sign a certificate: " + ssl_error());
  return x;
}

Result<std::unique_ptr<EVP_PKEY, KeyFree>> new_key() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (k == nullptr)
    return Error("cannot make a key: " + ssl_error());
  return std::unique_ptr<EVP_PKEY, KeyFree>(k);
}

}  // namespace

Status make_ca(const std::string& dir, const std::string& name) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return sys_error("cannot create directory", dir, errno);
  CM_ASSIGN(auto key, new_key());
  CM_ASSIGN(auto cert, make_cert(key.get(), name, nullptr, nullptr, true));
  CM_TRY(write_pem(dir + "/ca.key", 0600, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  }));
  return write_pem(dir + "/ca.crt", 0644, [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
}

Status issue_cert(const std::string& dir, const std::string& name, const std::string& out) {
  FILE* kf = std::fopen((dir + "/ca.key").c_str(), "re");
  if (kf == nullptr)
    return sys_error("cannot open", dir + "/ca.key", errno);
  std::unique_ptr<EVP_PKEY, KeyFree> ca_key(PEM_read_PrivateKey(kf, nullptr, nullptr, nullptr));
  std::fclose(kf);
  FILE* cf = std::fopen((dir + "/ca.crt").c_str(), "re");
  if (cf == nullptr)
    return sys_error("cannot open", dir + "/ca.crt", errno);
  std::unique_ptr<X509, X509Free> ca(PEM_read_X509(cf, nullptr, nullptr, nullptr));
  std::fclose(cf);
  if (!ca_key || !ca)
    return Error("'" + dir + "' does not hold a CA made by 'cm-push ca init'", kExitSecurity);
  // A certificate signed by a key that is not the CA certificate's, or by
  // a certificate that is not a CA, would verify against nothing.
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1)
    return Error("'" + dir + "/ca.key' is not the key of '" + dir + "/ca.crt'", kExitSecurity);
  if (X509_check_ca(ca.get()) == 0)
    return Error("'" + dir + "/ca.crt' is not a CA certificate", kExitSecurity);
  CM_ASSIGN(auto key, new_key());
  CM_ASSIGN(auto cert, make_cert(key.get(), name, ca.get(), ca_key.get(), false));
  CM_TRY(write_pem(out + ".key", 0600, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  }));
  return write_pem(out + ".crt", 0644, [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
}

}  // namespace cm::net
