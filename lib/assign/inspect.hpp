// Walking a pack as an applier would, without touching any file: the
// checks behind `cm-assign verify`, and the listing behind `show`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "assign/builder.hpp"
#include "assign/reader.hpp"

namespace cm::assign {

struct VerifyReport {
  uint64_t commands = 0;
  uint64_t data_bytes = 0;     // plain bytes consumed by commands
  uint64_t files_checked = 0;  // put commands whose SHA-256 was checked
};

// Reads every command and every data byte it names, checks each put's
// SHA-256, that the data members are consumed exactly, and finish().
Result<VerifyReport> verify(PackReader& pack, bool expect_end,
                            const std::function<void(const Command&)>& each = nullptr);

// Parts written to files: one part is FILE; several are FILE.001,
// FILE.002 ... Nothing is renamed into place until commit().
class FileParts {
 public:
  explicit FileParts(std::string path) : path_(std::move(path)) {}
  PartSink sink();
  Status commit();
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::string path_;
  std::vector<std::unique_ptr<Output>> outputs_;
  std::vector<std::string> names_;
};

}  // namespace cm::assign
