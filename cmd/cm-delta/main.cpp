// cm-delta: compare the shadow copy with the staging tree and write the
// delta table (cm-delta(1), cm-delta(5)). Options and wiring only.
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "delta/delta.hpp"
#include "util/clock.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;

namespace {

void diff_options(po::options_description& d) {
  d.add_options()  //
      ("output,o", po::value<std::string>()->value_name("FILE"),
       "write the table to FILE (default: standard output)")                      //
      ("dry-run,n", "compare and print the summary, write no table")              //
      ("stat", "print a summary: counts and bytes to send against the new tree")  //
      ("checksum,c", "compare every file by content, not size and mtime first")   //
      ("whole-file,W", "send changed files whole, never as deltas")               //
      ("include", po::value<std::vector<std::string>>()->value_name("PATTERN"),
       "include paths matching PATTERN (rsync rules; first match wins)")  //
      ("exclude", po::value<std::vector<std::string>>()->value_name("PATTERN"),
       "exclude paths matching PATTERN")  //
      ("include-from", po::value<std::vector<std::string>>()->value_name("FILE"),
       "read include patterns from FILE")  //
      ("exclude-from", po::value<std::vector<std::string>>()->value_name("FILE"),
       "read exclude patterns from FILE")  //
      ("manifest", po::value<std::string>()->value_name("FILE"),
       "the shadow's hash cache (default: SHADOW.cm-manifest beside it)")  //
      ("no-manifest", "neither read nor write a hash cache")               //
      ("block-size", po::value<size_t>()->value_name("N"),
       "librsync block length in bytes (default: chosen by file size)")  //
      ("threads", po::value<unsigned>()->default_value(2)->value_name("N"),
       "compare touched files byte by byte on N threads (1 to 64)");
}

// --include/--exclude in command-line order, as rsync applies them.
Status build_filter(const cli::Context& ctx, fs::Filter& f) {
  for (const po::option& o : ctx.ordered) {
    for (const std::string& v : o.value) {
      if (o.string_key == "include" || o.string_key == "exclude")
        f.add(o.string_key == "include", v);
      else if (o.string_key == "include-from" || o.string_key == "exclude-from")
        CM_TRY(f.add_from_file(v, o.string_key == "include-from"));
    }
  }
  return {};
}

Status print_summary(const cli::Context& ctx, const delta::Stats& s, bool to_stderr) {
  std::string text = ctx.json ? json_text(delta::summary_json(s)) + "\n" : delta::summary_text(s);
  (to_stderr ? std::cerr : std::cout) << text << std::flush;
  return {};
}

Status run_diff(cli::Context& ctx) {
  const std::string& shadow = ctx.args[0];
  const std::string& staging = ctx.args[1];
  bool dry = ctx.vm.count("dry-run") > 0;
  std::string out_path = ctx.vm.count("output") ? ctx.vm["output"].as<std::string>() : "-";
  if (dry && ctx.vm.count("output"))
    return Error("--dry-run writes no table; drop --output", kExitUsage);
  if (ctx.vm.count("manifest") && ctx.vm.count("no-manifest"))
    return Error("--manifest and --no-manifest exclude each other", kExitUsage);
  if (!dry && out_path == "-" && ::isatty(1))
    return Error("refusing to write a binary delta table to a terminal; use -o FILE, a pipe, or --dry-run",
                 kExitUsage);
  size_t block = ctx.vm.count("block-size") ? ctx.vm["block-size"].as<size_t>() : 0;
  if (ctx.vm.count("block-size") && (block < 16 || block > (1u << 20)))
    return Error("--block-size must be between 16 and 1048576", kExitUsage);

  fs::Filter filter;
  CM_TRY(build_filter(ctx, filter));
  CM_ASSIGN(auto base, fs::open_disk_tree(shadow));
  CM_ASSIGN(auto next, fs::open_disk_tree(staging));

  std::string manifest_path;
  if (!ctx.vm.count("no-manifest"))
    manifest_path = ctx.vm.count("manifest") ? ctx.vm["manifest"].as<std::string>()
                                             : delta::default_manifest_path(shadow);
  delta::Manifest manifest;
  if (!manifest_path.empty()) {
    auto m = delta::Manifest::load(manifest_path);
    if (m.ok())
      manifest = std::move(m).value();
    else
      ctx.diag.warning(m.error().message + "; rebuilding it");
  }

  delta::Options opt;
  opt.threads = ctx.vm["threads"].as<unsigned>();
  if (opt.threads < 1 || opt.threads > 64)
    return Error("--threads must be between 1 and 64", kExitUsage);
  opt.checksum = ctx.vm.count("checksum") > 0;
  opt.whole_file = ctx.vm.count("whole-file") > 0;
  opt.block_len = block;
  opt.filter = filter.empty() ? nullptr : &filter;
  opt.manifest = manifest_path.empty() ? nullptr : &manifest;
  opt.now_ns = wall_ns();

  cli::Progress progress(ctx.progress);
  delta::Callbacks cb;
  cb.warning = [&](const std::string& m) {
    progress.done();
    ctx.diag.warning(m);
  };
  if (ctx.diag.verbosity() == cli::Verbosity::Verbose)
    cb.entry = [&](const delta::Entry& e) {
      progress.done();
      ctx.diag.verbose(delta::describe(e));
    };
  cb.progress = [&](const delta::Progress& p) {
    progress.update([&] {
      std::string s = ctx.diag.program() + ": " + p.phase + " " + std::to_string(p.scanned) + " entries";
      if (p.total > 0)
        s += ", " + std::to_string(p.done) + "/" + std::to_string(p.total) + " compared, " +
             human_bytes(p.bytes) + " read";
      return s;
    });
  };

  std::unique_ptr<Output> out;
  std::unique_ptr<delta::TableWriter> table;
  if (!dry) {
    CM_ASSIGN(out, Output::open(out_path));
    table = std::make_unique<delta::TableWriter>(out->writer());
  }
  CM_ASSIGN(delta::Stats stats, delta::compute(*base, *next, opt, table.get(), cb));
  progress.done();
  if (out)
    CM_TRY(out->commit());

  if (opt.manifest != nullptr && manifest.changed()) {
    Status s = manifest.save(manifest_path);
    if (!s.ok())
      ctx.diag.warning("cannot save the hash cache: " + s.error().message);
  }
  if (dry || ctx.vm.count("stat"))
    return print_summary(ctx, stats, !dry && out_path == "-");
  return {};
}

void show_options(po::options_description& d) {
  d.add_options()                                                    //
      ("paths", "only the entries' paths, as they are, one a line")  //
      ("null,z", "with --paths: each path ends with a NUL, not a newline (any name)");
}

Status run_show(cli::Context& ctx) {
  bool paths = ctx.vm.count("paths") > 0, nul = ctx.vm.count("null") > 0;
  if (nul && !paths)
    return Error("-z goes with --paths", kExitUsage);
  if (paths && ctx.json)
    return Error("--paths and --json exclude each other", kExitUsage);
  std::string path = ctx.args.empty() ? "-" : ctx.args[0];
  CM_ASSIGN(auto in, open_input(path));
  delta::TableReader reader(*in, path == "-" ? "standard input" : path);
  CM_TRY(reader.open());
  for (;;) {
    CM_ASSIGN(auto e, reader.next());
    if (!e)
      break;
    if (paths)
      std::cout << e->path << (nul ? '\0' : '\n');
    else if (ctx.json)
      std::cout << json_text(delta::to_json(*e)) << "\n";
    else
      std::cout << delta::describe(*e) << "\n";
  }
  if (!ctx.json && !paths)
    std::cout << "# " << reader.trailer().entries << " entries, " << with_commas(reader.trailer().data_bytes)
              << " bytes of data; checksum verified\n";
  std::cout.flush();
  if (!std::cout)
    return Error("cannot write to standard output");
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-delta";
  p.purpose = "Compare the shadow copy with the staging tree and write the delta table.";
  p.commands.push_back(cli::Command{"", "[options] SHADOW STAGING",
                                    "Write the delta table that turns SHADOW into STAGING.", 2, 2,
                                    diff_options, run_diff, true});
  p.commands.push_back(cli::Command{"show", "[--json | --paths [-z]] [TABLE|-]",
                                    "List a delta table's entries and verify its checksum.", 0, 1,
                                    show_options, run_show, true});
  return cli::run(p, argc, argv);
}
