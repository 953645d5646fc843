// The assignment pack: format round trips, the builder and reader
// together, encryption and signatures, parts, and damage detection.
#include <gtest/gtest.h>

#include "assign/builder.hpp"
#include "assign/inspect.hpp"
#include "assign/reader.hpp"
#include "crypto/aead.hpp"

using namespace cm;
using namespace cm::assign;

namespace {

delta::Entry dir(const std::string& p) {
  delta::Entry e;
  e.op = delta::Op::Mkdir;
  e.path = p;
  e.mode = 0755;
  return e;
}

delta::Entry file(const std::string& p, const std::string& data) {
  delta::Entry e;
  e.op = delta::Op::File;
  e.path = p;
  e.mode = 0644;
  e.mtime_ns = 1700000000000000000;
  e.size = e.data_size = data.size();
  e.hash = sha256(data);
  return e;
}

std::string page(int i) {
  std::string s = "<html><body><h1>Page " + std::to_string(i) + "</h1>";
  for (int k = 0; k < 50; k++)
    s += "<p>Same paragraph of boilerplate text in every page.</p>";
  return s + "</body></html>";
}

struct Built {
  std::vector<std::string> parts;
  BuildStats stats;
};

// Builds from a list of (entry, data) with the given options.
Built build(BuildOptions opt, const std::vector<std::pair<delta::Entry, std::string>>& entries) {
  Built b;
  std::vector<std::unique_ptr<StringWriter>> outs;
  PartSink sink;
  sink.open = [&](uint64_t) -> Result<Writer*> {
    outs.push_back(std::make_unique<StringWriter>());
    return outs.back().get();
  };
  sink.close = [](uint64_t, bool) { return Status(); };
  Builder builder(std::move(opt), sink);
  EXPECT_TRUE(builder.begin().ok());
  for (auto& [e, data] : entries) {
    Status s = builder.add(e);
    EXPECT_TRUE(s.ok()) << s.error().message;
    if (!data.empty()) {
      EXPECT_TRUE(builder.data(data.data(), data.size()).ok());
    }
  }
  Status f = builder.finish();
  EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.error().message);
  for (auto& o : outs)
    b.parts.push_back(o->data());
  b.stats = builder.stats();
  return b;
}

BuildOptions opts(Type t = Type::Publish) {
  BuildOptions o;
  o.header.type = t;
  o.header.id = 7;
  o.header.sequence = 7;
  o.header.base = 6;
  o.header.site = "www";
  o.header.group = "web";
  o.header.created_ns = 1;
  return o;
}

// Opens, lists commands and verifies; returns the error or "".
std::string check(const std::string& pack, Keys keys = {}, std::vector<Command>* cmds = nullptr,
                  Header* header = nullptr) {
  StringReader in(pack, "pack");
  BufferedInput buf(in, "pack");
  PackReader r(buf, keys);
  Status s = r.open();
  if (!s.ok())
    return s.error().message;
  if (header)
    *header = r.header();
  auto rep = verify(r, true, [&](const Command& c) {
    if (cmds)
      cmds->push_back(c);
  });
  if (!rep.ok())
    return rep.error().message;
  return "";
}

}  // namespace

TEST(AssignFormat, HeaderRoundTrip) {
  Header h;
  h.type = Type::Commit;
  h.id = 99;
  h.job = 3;
  h.sequence = 12;
  h.base = 11;
  h.part = 2;
  h.last_part = false;
  h.site = "www.example.com";
  h.group = "eu";
  h.created_ns = -5;
  h.target = 98;
  h.encrypted = true;
  h.key_id = {1, 2, 3, 4, 5, 6, 7, 8};
  h.member(Member::Commands).present = true;
  h.member(Member::Commands).stored_size = 10;
  h.member(Member::Commands).plain_size = 20;
  h.commands = 3;
  auto d = decode_header(encode(h), "t");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->type, Type::Commit);
  EXPECT_EQ(d->id, 99u);
  EXPECT_EQ(d->base, 11u);
  EXPECT_EQ(d->part, 2u);
  EXPECT_FALSE(d->last_part);
  EXPECT_EQ(d->site, "www.example.com");
  EXPECT_EQ(d->target, 98u);
  EXPECT_TRUE(d->encrypted);
  EXPECT_EQ(d->key_id, h.key_id);
  EXPECT_EQ(d->member(Member::Commands).plain_size, 20u);
}

TEST(AssignFormat, HeaderRejectsNonsense) {
  Header h;
  h.id = 1;
  h.site = "s";
  h.member(Member::Commands).present = true;
  std::string ok = encode(h);
  EXPECT_TRUE(decode_header(ok, "t").ok());
  for (size_t i = 0; i < ok.size(); i++)
    EXPECT_FALSE(decode_header(ok.substr(0, i), "t").ok()) << "truncated at " << i;
  Header bad_site = h;
  bad_site.site = "a/b";
  EXPECT_FALSE(decode_header(encode(bad_site), "t").ok());
  Header zero = h;
  zero.id = 0;
  EXPECT_FALSE(decode_header(encode(zero), "t").ok());
  EXPECT_FALSE(decode_header(ok + "x", "t").ok());
}

TEST(AssignFormat, CommandRoundTrip) {
  Command c;
  c.op = Op::Patch;
  c.path = "a/b";
  c.mode = 0600;
  c.mtime_ns = 42;
  c.size = 1000;
  c.hash = result_check(sha256("x"));
  c.source = "old/b";
  c.basis_check = {9, 8, 7, 6, 5, 4, 3, 2};
  c.format = delta::DeltaFormat::Zstd;
  c.from = Member::DataRaw;
  c.length = 77;
  std::string rec;
  encode(c, rec);
  StringReader in(rec);
  CommandReader r(in, "t");
  auto got = r.next();
  ASSERT_TRUE(got.ok() && *got) << (got.ok() ? "" : got.error().message);
  const Command& d = **got;
  EXPECT_EQ(d.op, Op::Patch);
  EXPECT_EQ(d.path, "a/b");
  EXPECT_EQ(d.mode, 0600u);
  EXPECT_EQ(d.hash, c.hash);
  EXPECT_EQ(d.source, "old/b");
  EXPECT_EQ(d.basis_check, c.basis_check);
  EXPECT_EQ(d.format, delta::DeltaFormat::Zstd);
  EXPECT_EQ(d.length, 77u);
  auto end = r.next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

TEST(AssignFormat, CommandRejectsUnsafePaths) {
  for (const char* p : {"../x", "/etc/passwd", "a/../../b", ""}) {
    Command c;
    c.op = Op::Mkdir;
    c.path = p;
    std::string rec;
    encode(c, rec);
    StringReader in(rec);
    CommandReader r(in, "t");
    EXPECT_FALSE(r.next().ok()) << p;
  }
}

TEST(Aead, RoundTripAndTamper) {
  auto key = crypto::SymmetricKey::generate();
  ASSERT_TRUE(key.ok());
  crypto::NoncePrefix nonce{1, 2, 3, 4, 5, 6, 7};
  for (size_t n : {size_t{0}, size_t{1}, crypto::kChunk, crypto::kChunk + 1, 3 * crypto::kChunk}) {
    std::string plain(n, 'p');
    for (size_t i = 0; i < n; i++)
      plain[i] = static_cast<char>(i * 7);
    StringWriter sealed;
    crypto::SealWriter w(*key, nonce, 1, "aad", sealed);
    ASSERT_TRUE(w.write(plain.data(), plain.size()).ok());
    ASSERT_TRUE(w.finish().ok());
    EXPECT_EQ(sealed.data().size(), crypto::sealed_size(n));
    auto open = [&](const std::string& s, const std::string& aad) -> std::string {
      StringReader in(s);
      crypto::OpenReader r(*key, nonce, 1, aad, in);
      auto all = read_all(r, 1 << 24);
      return all.ok() ? *all : "ERROR";
    };
    EXPECT_EQ(open(sealed.data(), "aad"), plain) << n;
    EXPECT_EQ(open(sealed.data(), "other aad"), "ERROR");
    std::string flipped = sealed.data();
    flipped[flipped.size() / 2] ^= 1;
    EXPECT_EQ(open(flipped, "aad"), "ERROR");
    if (n > crypto::kChunk) {  // a cut at a chunk boundary loses the last-chunk flag
      EXPECT_EQ(open(sealed.data().substr(0, crypto::kChunk + crypto::kTag), "aad"), "ERROR");
    }
    EXPECT_EQ(open(sealed.data() + "x", "aad"), "ERROR");
  }
}

TEST(Pack, RoundTripPutsAndStructure) {
  std::vector<std::pair<delta::Entry, std::string>> in;
  in.push_back({dir("d"), ""});
  for (int i = 0; i < 20; i++)
    in.push_back({file("d/p" + std::to_string(i) + ".html", page(i)), page(i)});
  in.push_back({file("d/img.png", std::string(5000, 'x')), std::string(5000, 'x')});
  delta::Entry del;
  del.op = delta::Op::Delete;
  del.path = "gone";
  in.push_back({del, ""});
  auto b = build(opts(), in);
  ASSERT_EQ(b.parts.size(), 1u);
  std::vector<Command> cmds;
  Header h;
  ASSERT_EQ(check(b.parts[0], {}, &cmds, &h), "");
  EXPECT_EQ(h.id, 7u);
  EXPECT_EQ(h.site, "www");
  EXPECT_EQ(h.base, 6u);
  // Structure first, then data in member order.
  int first_data = -1, last_struct = -1;
  for (size_t i = 0; i < cmds.size(); i++) {
    if (cmds[i].takes_data() && first_data < 0)
      first_data = static_cast<int>(i);
    if (cmds[i].op == Op::Mkdir || cmds[i].op == Op::Remove)
      last_struct = static_cast<int>(i);
  }
  EXPECT_LT(last_struct, first_data);
  // The png is stored, the pages compressed together.
  for (const Command& c : cmds) {
    if (c.op == Op::Put) {
      EXPECT_EQ(c.from, c.path == "d/img.png" ? Member::DataRaw : Member::DataZstd) << c.path;
    }
  }
  EXPECT_LT(h.member(Member::DataZstd).stored_size, h.member(Member::DataZstd).plain_size / 10);
}

TEST(Pack, SameInputSameBytes) {
  std::vector<std::pair<delta::Entry, std::string>> in = {{file("a", "hello"), "hello"}};
  EXPECT_EQ(build(opts(), in).parts, build(opts(), in).parts);
}

TEST(Pack, BuilderRejectsDataNotMatchingTheHash) {
  delta::Entry e = file("a", "hello");
  std::vector<std::unique_ptr<StringWriter>> outs;
  PartSink sink;
  sink.open = [&](uint64_t) -> Result<Writer*> {
    outs.push_back(std::make_unique<StringWriter>());
    return outs.back().get();
  };
  sink.close = [](uint64_t, bool) { return Status(); };
  Builder b(opts(), sink);
  ASSERT_TRUE(b.begin().ok());
  ASSERT_TRUE(b.add(e).ok());
  Status s = b.data("jello", 5);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, kExitBadInput);
}

TEST(Pack, SignedAndEncrypted) {
  auto sk = crypto::SigningKey::generate();
  auto ek = crypto::SymmetricKey::generate();
  auto other = crypto::SigningKey::generate();
  auto other_ek = crypto::SymmetricKey::generate();
  ASSERT_TRUE(sk.ok() && ek.ok() && other.ok() && other_ek.ok());
  BuildOptions o = opts();
  o.sign = &*sk;
  o.encrypt = &*ek;
  auto b = build(o, {{file("secret-name.html", page(1)), page(1)}});
  ASSERT_EQ(b.parts.size(), 1u);
  const std::string& pack = b.parts[0];
  EXPECT_EQ(pack.find("secret-name"), std::string::npos);
  EXPECT_EQ(pack.find("boilerplate"), std::string::npos);
  EXPECT_EQ(check(pack, Keys{&*sk, &*ek}), "");
  EXPECT_NE(check(pack, Keys{&*other, &*ek}).find("signed by key"), std::string::npos);
  EXPECT_NE(check(pack, Keys{&*sk, &*other_ek}).find("encrypted for key"), std::string::npos);
  // Unsigned packs fail when a signature is required.
  auto plain = build(opts(), {{file("a", "x"), "x"}});
  EXPECT_NE(check(plain.parts[0], Keys{&*sk, nullptr}).find("unsigned"), std::string::npos);
}

TEST(Pack, EveryTruncationAndFlipIsDetected) {
  auto sk = crypto::SigningKey::generate();
  BuildOptions o = opts();
  o.sign = &*sk;
  auto b = build(
      o, {{dir("d"), ""}, {file("d/a.html", page(1)), page(1)}, {file("d/b.bin", "\x01\x02"), "\x01\x02"}});
  const std::string& pack = b.parts[0];
  ASSERT_EQ(check(pack, Keys{&*sk, nullptr}), "");
  for (size_t n = 0; n < pack.size(); n++)
    EXPECT_NE(check(pack.substr(0, n), Keys{&*sk, nullptr}), "") << "truncated to " << n;
  for (size_t i = 0; i < pack.size(); i++) {
    std::string bad = pack;
    bad[i] ^= 0x10;
    EXPECT_NE(check(bad, Keys{&*sk, nullptr}), "") << "flip at " << i;
  }
  EXPECT_NE(check(pack + "junk"), "");
}

// A reader that checks every put itself reads stored data unhashed, and
// must read all of it: a byte no command reads would be checked by no one.
TEST(Pack, AMemberLeftUnhashedMustBeReadWhole) {
  std::string blob(4000, 'b');
  auto b = build(opts(), {{file("a.png", blob), blob}});
  ASSERT_EQ(b.parts.size(), 1u);
  for (bool whole : {true, false}) {
    StringReader in(b.parts[0], "pack");
    BufferedInput buf(in, "pack");
    PackReader r(buf, {});
    ASSERT_TRUE(r.open().ok());
    r.set_puts_checked(true);
    auto c = r.next_command();
    while (c.ok() && *c && (*c)->op == Op::Unpack)
      c = r.next_command();
    ASSERT_TRUE(c.ok() && *c && (*c)->op == Op::Put && (*c)->from == Member::DataRaw);
    auto m = r.member(Member::DataRaw);
    ASSERT_TRUE(m.ok());
    std::string got(whole ? blob.size() : blob.size() - 1, '\0');
    size_t have = 0;
    while (have < got.size()) {
      auto n = (*m)->read(got.data() + have, got.size() - have);
      ASSERT_TRUE(n.ok() && *n > 0);
      have += *n;
    }
    EXPECT_EQ(got, blob.substr(0, got.size()));
    Status s = r.finish(true);
    if (whole) {
      EXPECT_TRUE(s.ok()) << s.error().message;
    } else {
      ASSERT_FALSE(s.ok());
      EXPECT_NE(s.error().message.find("1 bytes no command reads"), std::string::npos) << s.error().message;
    }
  }
}

TEST(Pack, SplitsIntoParts) {
  std::vector<std::pair<delta::Entry, std::string>> in;
  std::string blob(30000, 'b');
  for (size_t i = 0; i < blob.size(); i++)
    blob[i] = static_cast<char>((i * 2654435761u) >> 11);
  for (int i = 0; i < 10; i++)
    in.push_back({file("f" + std::to_string(i) + ".jpg", blob), blob});
  BuildOptions o = opts(Type::Replicate);
  o.max_part = 100000;
  auto b = build(o, in);
  ASSERT_GE(b.parts.size(), 4u);
  uint64_t files = 0;
  for (size_t i = 0; i < b.parts.size(); i++) {
    EXPECT_LE(b.parts[i].size(), o.max_part);
    std::vector<Command> cmds;
    Header h;
    ASSERT_EQ(check(b.parts[i], {}, &cmds, &h), "");
    EXPECT_EQ(h.part, i + 1);
    EXPECT_EQ(h.last_part, i + 1 == b.parts.size());
    for (const Command& c : cmds)
      files += c.op == Op::Put;
  }
  EXPECT_EQ(files, 10u);
}
