// cm-assign: compile a delta table (or a tree, or an archive) into an
// assignment pack; show and verify packs; make keys (cm-assign(1),
// cm-assign(5)). Options and wiring only.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "assign/inspect.hpp"
#include "assign/sources.hpp"
#include "cli/cli.hpp"
#include "util/clock.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;

namespace {

void build_options(po::options_description& d) {
  d.add_options()  //
      ("type,t", po::value<std::string>()->value_name("TYPE"),
       "publish, replicate, synchronize, restore, remove, commit or rollback")                            //
      ("id", po::value<uint64_t>()->value_name("N"), "assignment id (required, > 0)")                     //
      ("job", po::value<uint64_t>()->default_value(0)->value_name("N"), "job id")                         //
      ("seq", po::value<uint64_t>()->value_name("N"), "sequence number within the site (default: --id)")  //
      ("base", po::value<uint64_t>()->value_name("N"),
       "the sequence this applies on (default: seq-1 for publish, 0 = a full tree otherwise)")            //
      ("site", po::value<std::string>()->value_name("NAME"), "site name (required)")                      //
      ("group", po::value<std::string>()->default_value("")->value_name("NAME"), "target content group")  //
      ("target", po::value<uint64_t>()->default_value(0)->value_name("ID"),
       "commit/rollback: the assignment whose version to switch to (0: the latest staged / the previous)")  //
      ("from", po::value<std::string>()->value_name("DIR"),
       "replicate or synchronize: the whole tree DIR")                                                      //
      ("archive", po::value<std::string>()->value_name("FILE"), "restore: a checkpoint archive")            //
      ("exclude", po::value<std::vector<std::string>>()->value_name("PATTERN"), "with --from: skip paths")  //
      ("compress", po::value<std::vector<std::string>>()->value_name("GLOBS"),
       "compress files matching these comma-separated globs")  //
      ("store", po::value<std::vector<std::string>>()->value_name("GLOBS"),
       "store files matching these globs as they are")  //
      ("level", po::value<int>()->value_name("N"),
       "zstd level, 1-19 (default: 19 up to 2 MiB, lower for more)")                                    //
      ("sign-key", po::value<std::string>()->value_name("FILE"), "sign with this Ed25519 private key")  //
      ("encrypt-key", po::value<std::string>()->value_name("FILE"), "encrypt with this AES-256 key")    //
      ("max-size", po::value<std::string>()->value_name("SIZE"),
       "largest part, e.g. 4G (default), 500M; a larger job is split")  //
      ("output,o", po::value<std::string>()->value_name("FILE"),
       "the pack (required; - for standard output)");
}

void read_options(po::options_description& d) {
  d.add_options()                                                                                        //
      ("pubkey", po::value<std::string>()->value_name("FILE"), "require a valid signature by this key")  //
      ("key", po::value<std::string>()->value_name("FILE"), "decrypt with this key");
}

void keygen_options(po::options_description& d) {
  d.add_options()                                                              //
      ("sign", "an Ed25519 signing key pair: OUT.sec (private) and OUT.pub")   //
      ("encrypt", "a 256-bit symmetric key for --encrypt-key and --key: OUT")  //
      ("output,o", po::value<std::string>()->value_name("OUT"), "where to write (required)");
}

Result<uint64_t> parse_max_size(const std::string& s) {
  CM_ASSIGN(uint64_t bytes, parse_size(s, "--max-size"));
  if (bytes < 64 * 1024)
    return Error("--max-size must be at least 64K", kExitUsage);
  return bytes;
}

int64_t now_ns() {
  // SOURCE_DATE_EPOCH makes builds reproducible, as for Debian packages.
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde != nullptr && *sde)
    return static_cast<int64_t>(std::strtoll(sde, nullptr, 10)) * 1000000000;
  return wall_ns();
}

template <class T>
std::optional<T> opt(const cli::Context& ctx, const char* name) {
  if (!ctx.vm.count(name))
    return std::nullopt;
  return ctx.vm[name].as<T>();
}

Status run_build(cli::Context& ctx) {
  auto type_s = opt<std::string>(ctx, "type");
  auto id = opt<uint64_t>(ctx, "id");
  auto site = opt<std::string>(ctx, "site");
  auto out_path = opt<std::string>(ctx, "output");
  if (!type_s || !id || !site || !out_path)
    return Error("build needs --type, --id, --site and -o", kExitUsage);
  auto type = assign::parse_type(*type_s);
  if (!type)
    return Error("unknown assignment type '" + *type_s + "'", kExitUsage);
  if (*id == 0)
    return Error("--id must be greater than 0", kExitUsage);
  auto from = opt<std::string>(ctx, "from");
  auto archive = opt<std::string>(ctx, "archive");
  bool has_table = !ctx.args.empty();
  using assign::Type;
  switch (*type) {
    case Type::Publish:
      if (!has_table || from || archive)
        return Error("publish takes a delta table (a file or -), and no --from or --archive", kExitUsage);
      break;
    case Type::Synchronize:
      if (has_table == static_cast<bool>(from) || archive)
        return Error("synchronize takes either a delta table or --from DIR", kExitUsage);
      if (has_table && !ctx.vm.count("base"))
        return Error("synchronize from a delta table needs --base: the sequence the table starts from",
                     kExitUsage);
      break;
    case Type::Replicate:
      if (!from || has_table || archive)
        return Error("replicate takes --from DIR", kExitUsage);
      break;
    case Type::Restore:
      if (!archive || has_table || from)
        return Error("restore takes --archive FILE", kExitUsage);
      break;
    default:
      if (has_table || from || archive)
        return Error(
            std::string(assign::type_name(*type)) + " carries no data: no table, --from or --archive",
            kExitUsage);
  }
  // Options that would do nothing for this type: a usage error, not a
  // silent no-op (an --exclude meant to keep secrets out must not be lost).
  if (ctx.vm.count("exclude") && !from)
    return Error("--exclude applies to --from DIR only (a delta table is filtered by cm-delta)", kExitUsage);
  if (!ctx.vm["target"].defaulted() && *type != Type::Commit && *type != Type::Rollback)
    return Error("--target applies to commit and rollback only", kExitUsage);
  if (*out_path == "-" && ::isatty(1))
    return Error("refusing to write a binary assignment to a terminal; use -o FILE or a pipe", kExitUsage);

  assign::BuildOptions bo;
  assign::Header& h = bo.header;
  h.type = *type;
  h.id = *id;
  h.job = ctx.vm["job"].as<uint64_t>();
  h.sequence = opt<uint64_t>(ctx, "seq").value_or(*id);
  h.base = opt<uint64_t>(ctx, "base").value_or(*type == Type::Publish && h.sequence > 0 ? h.sequence - 1 : 0);
  // A version's sequence is greater than its base's: cm-apply would
  // otherwise stage a version that does not advance the site.
  if (h.base != 0 && h.base >= h.sequence)
    return Error("--base " + std::to_string(h.base) + " must be less than " +
                     (ctx.vm.count("seq")
                          ? "--seq " + std::to_string(h.sequence)
                          : "the sequence " + std::to_string(h.sequence) + " (--id, as no --seq is given)") +
                     ": a version's sequence is greater than its base's",
                 kExitUsage);
  h.site = *site;
  h.group = ctx.vm["group"].as<std::string>();
  // What every reader refuses is not written either.
  if (!assign::valid_name(h.site, false))
    return Error("--site must be 1 to 255 bytes of UTF-8 without '/' or control characters", kExitUsage);
  if (!assign::valid_name(h.group, true))
    return Error("--group must be at most 255 bytes of UTF-8 without '/' or control characters", kExitUsage);
  h.target = ctx.vm["target"].as<uint64_t>();
  h.created_ns = now_ns();
  for (const po::option& o : ctx.ordered)
    if (o.string_key == "compress" || o.string_key == "store")
      for (const std::string& v : o.value)
        bo.policy.add(o.string_key == "compress", v);
  if (auto level = opt<int>(ctx, "level")) {
    if (*level < 1 || *level > 19)
      return Error("--level must be between 1 and 19", kExitUsage);
    bo.level = *level;
  }
  if (auto ms = opt<std::string>(ctx, "max-size")) {
    CM_ASSIGN(bo.max_part, parse_max_size(*ms));
  }
  std::optional<crypto::SigningKey> sign;
  std::optional<crypto::SymmetricKey> enc;
  if (auto f = opt<std::string>(ctx, "sign-key")) {
    CM_ASSIGN(sign, crypto::SigningKey::load_private(*f));
    bo.sign = &*sign;
  }
  if (auto f = opt<std::string>(ctx, "encrypt-key")) {
    CM_ASSIGN(enc, crypto::SymmetricKey::load(*f));
    bo.encrypt = &*enc;
  }

  assign::FileParts files(*out_path);
  FdWriter stdout_writer(1, "standard output");
  assign::PartSink sink;
  if (*out_path == "-") {
    sink.open = [&](uint64_t) -> Result<Writer*> { return &stdout_writer; };
    sink.close = [&](uint64_t, bool) { return stdout_writer.flush(); };
  } else {
    sink = files.sink();
  }
  assign::Builder builder(std::move(bo), sink);
  // On a terminal: what has been read, then which part is being written
  // (a large part's compression is most of a build's time).
  cli::Progress progress(ctx.progress);
  auto warn = [&](const std::string& m) {
    progress.done();
    ctx.diag.warning(m);
  };
  builder.warning = warn;
  if (ctx.progress)
    builder.progress = [&](const assign::BuildProgress& p) {
      progress.update(
          [&] {
            std::string s = ctx.diag.program() + ": " + with_commas(p.entries) + " entries, " +
                            human_bytes(p.bytes) + " of data";
            if (p.writing_part != 0)
              s += "; writing part " + std::to_string(p.writing_part);
            return s;
          },
          p.writing_part != 0);
    };

  if (has_table) {
    CM_ASSIGN(auto in, open_input(ctx.args[0]));
    CM_TRY(assign::feed_table(*in, in->name(), builder));
  } else if (from) {
    fs::Filter filter;
    if (auto ex = opt<std::vector<std::string>>(ctx, "exclude"))
      for (const std::string& p : *ex)
        filter.add(false, p);
    delta::Callbacks cb;
    cb.warning = warn;
    CM_TRY(assign::feed_tree(*from, filter.empty() ? nullptr : &filter, builder, cb));
  } else if (archive) {
    CM_TRY(assign::feed_archive(*archive, builder, warn));
  } else {
    CM_TRY(builder.begin());
    CM_TRY(builder.finish());
  }
  progress.done();
  if (*out_path != "-")
    CM_TRY(files.commit());

  const assign::BuildStats& st = builder.stats();
  if (ctx.json && *out_path != "-") {
    nlohmann::json j{{"parts", files.names()},
                     {"commands", st.commands},
                     {"data_plain_bytes", st.data_plain},
                     {"data_stored_bytes", st.data_stored},
                     {"pack_bytes", st.pack_bytes},
                     {"compressed_files", st.compressed_items},
                     {"stored_files", st.stored_items}};
    std::cout << json_text(j) << "\n";
  }
  ctx.diag.verbose(std::to_string(st.parts) + " part(s), " + std::to_string(st.commands) +
                   " commands, data " + with_commas(st.data_plain) + " -> " + with_commas(st.data_stored) +
                   " bytes, pack " + with_commas(st.pack_bytes) + " bytes");
  return {};
}

struct ReadKeys {
  std::optional<crypto::SigningKey> pub;
  std::optional<crypto::SymmetricKey> key;
  assign::Keys keys;
};

Status load_keys(const cli::Context& ctx, ReadKeys& k) {
  if (auto f = opt<std::string>(ctx, "pubkey")) {
    CM_ASSIGN(k.pub, crypto::SigningKey::load_public(*f));
    k.keys.pubkey = &*k.pub;
  }
  if (auto f = opt<std::string>(ctx, "key")) {
    CM_ASSIGN(k.key, crypto::SymmetricKey::load(*f));
    k.keys.key = &*k.key;
  }
  return {};
}

std::string time_string(int64_t ns) {
  time_t t = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

void print_header(const assign::PackReader& p) {
  const assign::Header& h = p.header();
  std::cout << "assignment " << h.id << " (" << assign::type_name(h.type) << "), part " << h.part
            << (h.last_part ? " (last)" : " (more follow)") << "\n";
  std::cout << "  site " << quote_path(h.site) << ", group " << (h.group.empty() ? "-" : quote_path(h.group))
            << ", job " << h.job << ", sequence " << h.sequence;
  if (h.base != 0)
    std::cout << " on " << h.base;
  else if (assign::carries_data(h.type))
    std::cout << " (a full tree)";
  std::cout << "\n  created " << time_string(h.created_ns) << "\n";
  if (h.type == assign::Type::Commit || h.type == assign::Type::Rollback)
    std::cout << "  switches to "
              << (h.target == 0 ? std::string("the default version")
                                : "assignment " + std::to_string(h.target))
              << "\n";
  if (p.is_signed())
    std::cout << "  signed by key " << crypto::key_id_hex(p.signer())
              << (p.signature_checked() ? " (verified)" : " (not checked: give --pubkey)") << "\n";
  else
    std::cout << "  not signed\n";
  if (h.encrypted)
    std::cout << "  encrypted (aes-256-gcm) with key " << crypto::key_id_hex(h.key_id) << "\n";
  std::cout << "  " << h.commands << " commands; data " << with_commas(h.data_bytes)
            << " bytes; files written " << with_commas(h.content_bytes) << " bytes\n";
  for (int i = 0; i < assign::kMembers; i++) {
    const assign::MemberInfo& m = h.members[i];
    if (!m.present)
      continue;
    std::cout << "  member " << assign::member_name(static_cast<assign::Member>(i)) << ": "
              << with_commas(m.stored_size) << " bytes stored, " << with_commas(m.plain_size) << " plain"
              << (m.zstd ? ", zstd" : "") << "\n";
  }
}

// Runs f on each pack of the input (a multi-part stream holds several).
Status each_pack(const cli::Context& ctx, const ReadKeys& k,
                 const std::function<Status(assign::PackReader&, bool)>& f) {
  std::string path = ctx.args.empty() ? "-" : ctx.args[0];
  CM_ASSIGN(auto in, open_input(path));
  assign::BufferedInput buf(*in, in->name());
  uint64_t id = 0, part = 0;
  for (;;) {
    assign::PackReader pack(buf, k.keys);
    CM_TRY(pack.open());
    const assign::Header& h = pack.header();
    // A stream holds consecutive parts of one assignment.
    if (part != 0 && (h.id != id || h.part != part + 1))
      return Error("'" + in->name() + "': part " + std::to_string(h.part) + " of assignment " +
                       std::to_string(h.id) + " follows part " + std::to_string(part) + " of assignment " +
                       std::to_string(id) + "; parts must come in order",
                   kExitBadInput);
    id = h.id;
    part = h.part;
    bool last = h.last_part;
    CM_TRY(f(pack, last));
    CM_ASSIGN(bool end, buf.at_end());
    if (end)
      return {};
    if (last)
      return Error("'" + in->name() + "': data after the last part", kExitBadInput);
  }
}

Status run_show(cli::Context& ctx) {
  ReadKeys k;
  CM_TRY(load_keys(ctx, k));
  return each_pack(ctx, k, [&](assign::PackReader& pack, bool last) -> Status {
    if (ctx.json) {
      nlohmann::json j = assign::to_json(pack.header());
      j["signed"] = pack.is_signed();
      if (pack.is_signed())
        j["signer"] = crypto::key_id_hex(pack.signer());
      j["signature_checked"] = pack.signature_checked();
      std::cout << json_text(j) << "\n";
    } else {
      print_header(pack);
    }
    if (!pack.commands_readable()) {
      if (!ctx.json)
        std::cout << "  (the command list is encrypted: give --key to list it)\n";
    } else {
      for (;;) {
        CM_ASSIGN(auto c, pack.next_command());
        if (!c)
          break;
        std::cout << (ctx.json ? json_text(assign::to_json(*c)) : "  " + assign::describe(*c)) << "\n";
      }
    }
    std::cout.flush();
    return pack.finish(last);
  });
}

Status run_verify(cli::Context& ctx) {
  ReadKeys k;
  CM_TRY(load_keys(ctx, k));
  uint64_t parts = 0;
  nlohmann::json reports = nlohmann::json::array();
  Status checked = each_pack(ctx, k, [&](assign::PackReader& pack, bool last) -> Status {
    if (pack.header().encrypted && k.keys.key == nullptr)
      return Error("'" + pack.name() + "': encrypted; give --key to check that it decrypts", kExitSecurity);
    CM_ASSIGN(assign::VerifyReport rep, assign::verify(pack, last));
    parts++;
    const assign::Header& h = pack.header();
    if (ctx.json)
      reports.push_back({{"id", h.id},
                         {"part", h.part},
                         {"commands", rep.commands},
                         {"data_bytes", rep.data_bytes},
                         {"files_checked", rep.files_checked},
                         {"signed", pack.is_signed()},
                         {"signature_checked", pack.signature_checked()},
                         {"encrypted", h.encrypted}});
    else
      std::cout << "assignment " << h.id << " part " << h.part << ": OK (" << rep.commands << " commands, "
                << rep.files_checked << " files checked, " << with_commas(rep.data_bytes) << " bytes of data"
                << (pack.signature_checked() ? ", signature verified"
                    : pack.is_signed()       ? ", signature not checked"
                                             : ", unsigned")
                << (h.encrypted ? ", decrypted" : "") << ")\n";
    return {};
  });
  if (ctx.json) {
    // A script reads "ok" either way; what failed is named too.
    nlohmann::json j{{"ok", checked.ok()}, {"parts", reports}};
    if (!checked.ok())
      j["error"] = checked.error().message;
    std::cout << json_text(j) << "\n";
  }
  return checked;
}

Status run_keygen(cli::Context& ctx) {
  auto out = opt<std::string>(ctx, "output");
  bool sign = ctx.vm.count("sign") > 0, encrypt = ctx.vm.count("encrypt") > 0;
  if (!out || sign == encrypt)
    return Error("keygen needs exactly one of --sign and --encrypt, and -o", kExitUsage);
  if (out->empty() || out->back() == '/')
    return Error("keygen -o needs a file name (it got '" + *out + "')", kExitUsage);
  if (sign) {
    CM_ASSIGN(auto key, crypto::SigningKey::generate());
    CM_TRY(key.save_private(*out + ".sec"));
    CM_TRY(key.save_public(*out + ".pub"));
    std::cout << (ctx.json ? json_text(nlohmann::json{{"private", *out + ".sec"},
                                                      {"public", *out + ".pub"},
                                                      {"key_id", crypto::key_id_hex(key.id())}})
                           : "signing key " + crypto::key_id_hex(key.id()) + ": " + *out +
                                 ".sec (keep secret), " + *out + ".pub (for every server)")
              << "\n";
  } else {
    CM_ASSIGN(auto key, crypto::SymmetricKey::generate());
    CM_TRY(key.save(*out));
    std::cout << (ctx.json
                      ? json_text(nlohmann::json{{"key", *out}, {"key_id", crypto::key_id_hex(key.id())}})
                      : "encryption key " + crypto::key_id_hex(key.id()) + ": " + *out +
                            " (copy it to every server)")
              << "\n";
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-assign";
  p.purpose = "Compile delta tables into assignment packs; show and verify packs; make keys.";
  p.commands.push_back(
      cli::Command{"build", "--type TYPE --id N --site NAME [options] [TABLE|-] -o FILE|-",
                   "Compile a delta table (or --from DIR, --archive FILE) into an assignment.", 0, 1,
                   build_options, run_build, true});
  p.commands.push_back(cli::Command{"show", "[--key FILE] [--pubkey FILE] [--json] [PACK|-]",
                                    "List an assignment's header and commands.", 0, 1, read_options, run_show,
                                    true});
  p.commands.push_back(
      cli::Command{"verify", "[--pubkey FILE] [--key FILE] [--json] [PACK|-]",
                   "Check structure, hashes, signature and decryption; exit 0 only if all hold.", 0, 1,
                   read_options, run_verify, true});
  p.commands.push_back(cli::Command{"keygen", "--sign|--encrypt -o OUT",
                                    "Make a signing key pair or an encryption key.", 0, 0, keygen_options,
                                    run_keygen, true});
  return cli::run(p, argc, argv);
}
