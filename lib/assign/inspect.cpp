#include "assign/inspect.hpp"

#include <unistd.h>

#include <cstdio>

#include "util/text.hpp"

namespace cm::assign {

Result<VerifyReport> verify(PackReader& pack, bool expect_end,
                            const std::function<void(const Command&)>& each) {
  const Header& h = pack.header();
  VerifyReport rep;
  uint64_t used[kMembers] = {};
  std::vector<char> buf(256 * 1024);
  int last_member = 0;
  auto bad = [&](const std::string& why) { return Error("'" + pack.name() + "': " + why, kExitBadInput); };
  for (;;) {
    CM_ASSIGN(auto c, pack.next_command());
    if (!c)
      break;
    rep.commands++;
    if (each)
      each(*c);
    if (c->op == Op::Unpack) {
      const MemberInfo& mi = h.member(c->from);
      uint8_t want = static_cast<uint8_t>((h.encrypted ? 1 : 0) | (mi.zstd ? 2 : 0));
      if (!mi.present || c->unpack != want)
        return bad(std::string("the unpack step for ") + member_name(c->from) + " does not match the header");
      continue;
    }
    if (!c->takes_data())
      continue;
    int m = static_cast<int>(c->from);
    if (m < last_member)
      return bad("data commands go back to an earlier member");
    last_member = m;
    CM_ASSIGN(Reader * in, pack.member(c->from));
    Sha256 hash;
    uint64_t left = c->length;
    while (left > 0) {
      CM_ASSIGN(size_t got, in->read(buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size()))));
      if (got == 0)
        return bad(std::string("the ") + member_name(c->from) + " member ends before " + quote_path(c->path) +
                   "'s data");
      if (c->op == Op::Put)
        hash.update(buf.data(), got);
      left -= got;
    }
    used[m] += c->length;
    rep.data_bytes += c->length;
    if (c->op == Op::Put) {
      if (result_check(hash.finish()) != c->hash)
        return bad("the data of " + quote_path(c->path) + " does not match its SHA-256");
      rep.files_checked++;
    }
  }
  for (int m = 1; m < kMembers; m++) {
    const MemberInfo& mi = h.members[m];
    if (mi.present && used[m] != mi.plain_size)
      return bad(std::string("the commands use ") + std::to_string(used[m]) + " bytes of the " +
                 member_name(static_cast<Member>(m)) + " member, which holds " +
                 std::to_string(mi.plain_size));
  }
  CM_TRY(pack.finish(expect_end));
  return rep;
}

PartSink FileParts::sink() {
  PartSink s;
  s.open = [this](uint64_t part) -> Result<Writer*> {
    (void)part;
    CM_ASSIGN(auto out, Output::open(path_));
    outputs_.push_back(std::move(out));
    return &outputs_.back()->writer();
  };
  s.close = [this](uint64_t, bool) { return outputs_.back()->sync(); };
  return s;
}

namespace {
std::string part_name(const std::string& path, size_t i) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%03zu", i);
  return path + suffix;
}
}  // namespace

Status FileParts::commit() {
  names_.clear();
  if (outputs_.size() == 1) {
    CM_TRY(outputs_[0]->commit());
    names_.push_back(path_);
  } else {
    for (size_t i = 0; i < outputs_.size(); i++) {
      names_.push_back(part_name(path_, i + 1));
      CM_TRY(outputs_[i]->commit_as(names_.back()));
    }
    ::unlink(path_.c_str());  // a single-part pack from an earlier build
  }
  // Parts of an earlier, longer build would look like more of this one.
  for (size_t i = outputs_.size() == 1 ? 1 : outputs_.size() + 1;; i++) {
    std::string stale = part_name(path_, i);
    if (::unlink(stale.c_str()) != 0)
      break;
  }
  return {};
}

}  // namespace cm::assign
