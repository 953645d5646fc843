// A thin, error-returning layer over SQLite: open with migrations, prepared
// statements, immediate transactions. Every failure names the database and
// maps to an exit code: locked -> kExitBusy, damaged or from a newer
// cm-sched -> kExitBadInput.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/result.hpp"

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

namespace cm::sched {

class Db;

class Stmt {
 public:
  Stmt(Stmt&& o) noexcept : db_(o.db_), st_(o.st_) { o.st_ = nullptr; }
  Stmt(const Stmt&) = delete;
  ~Stmt();
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, const std::string& v);
  Stmt& bind_null(int i);
  Stmt& bind(int i, const std::optional<int64_t>& v) { return v ? bind(i, *v) : bind_null(i); }
  // A row (true) or the end (false).
  Result<bool> step();
  Status run();  // steps to the end
  // Steps to the end, calling on_row() at each row (read it from *this).
  template <class F>
  Status each(F on_row) {
    for (;;) {
      CM_ASSIGN(bool row, step());
      if (!row)
        return {};
      on_row();
    }
  }
  int64_t i64(int col) const;
  std::optional<int64_t> opt_i64(int col) const;
  std::string text(int col) const;

 private:
  friend class Db;
  Stmt(Db* db, sqlite3_stmt* st) : db_(db), st_(st) {}
  Db* db_;
  sqlite3_stmt* st_;
};

class Db {
 public:
  // Opens (creating when `create`) and brings the schema up to date: each
  // migration is applied once, in order, in one transaction. Read-only (a
  // query: another user's database, a read-only mount): nothing written,
  // and a schema behind this program's is an error.
  static Result<std::unique_ptr<Db>> open(const std::string& path, const std::vector<std::string>& migrations,
                                          bool create, int busy_ms = 5000, bool read_only = false);
  ~Db();
  Result<Stmt> prepare(const std::string& sql);
  Status exec(const std::string& sql);
  Status begin();  // BEGIN IMMEDIATE: the write lock, or kExitBusy
  Status commit();
  void rollback();
  int64_t last_insert_id() const;
  int changes() const;
  const std::string& path() const { return path_; }
  Error error(const std::string& what) const;  // the last SQLite error

 private:
  Db() = default;
  sqlite3* db_ = nullptr;
  std::string path_;
};

// Rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) {}
  ~Transaction() {
    if (open_)
      db_.rollback();
  }
  Status begin() {
    CM_TRY(db_.begin());
    open_ = true;
    return {};
  }
  Status commit() {
    CM_TRY(db_.commit());
    open_ = false;
    return {};
  }

 private:
  Db& db_;
  bool open_ = false;
};

}  // namespace cm::sched
