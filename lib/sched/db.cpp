#include "sched/db.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>

namespace cm::sched {

Stmt::~Stmt() {
  if (st_ != nullptr)
    sqlite3_finalize(st_);
}

Stmt& Stmt::bind(int i, int64_t v) {
  sqlite3_bind_int64(st_, i, v);
  return *this;
}

Stmt& Stmt::bind(int i, const std::string& v) {
  sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::bind_null(int i) {
  sqlite3_bind_null(st_, i);
  return *this;
}

Result<bool> Stmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW)
    return true;
  if (rc == SQLITE_DONE)
    return false;
  return db_->error("cannot update");
}

Status Stmt::run() {
  return each([] {});
}

int64_t Stmt::i64(int col) const {
  return sqlite3_column_int64(st_, col);
}

std::optional<int64_t> Stmt::opt_i64(int col) const {
  if (sqlite3_column_type(st_, col) == SQLITE_NULL)
    return std::nullopt;
  return sqlite3_column_int64(st_, col);
}

std::string Stmt::text(int col) const {
  const unsigned char* p = sqlite3_column_text(st_, col);
  return p == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(p),
                                    static_cast<size_t>(sqlite3_column_bytes(st_, col)));
}

Error Db::error(const std::string& what) const {
  int rc = db_ != nullptr ? sqlite3_extended_errcode(db_) & 0xff : SQLITE_ERROR;
  std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
    return Error("the database '" + path_ + "' is locked by another cm-sched; try again", kExitBusy);
  if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
    return Error("'" + path_ + "' is not a cm-sched database, or it is damaged (" + msg + ")", kExitBadInput);
  return Error(what + " '" + path_ + "': " + msg, kExitFailure);
}

Result<std::unique_ptr<Db>> Db::open(const std::string& path, const std::vector<std::string>& migrations,
                                     bool create, int busy_ms, bool read_only) {
  // SQLite takes "" for a temporary database, gone at the end.
  if (path.empty())
    return Error("an empty database file name (--db)", kExitUsage);
  std::unique_ptr<Db> db(new Db());
  db->path_ = path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (!create)
      return Error("no database at '" + path + "' (create it with 'cm-sched init')", kExitFailure);
  } else if (!S_ISREG(st.st_mode)) {
    return Error("'" + path + "' is not a file", kExitFailure);  // 3 says 'damaged': it is not that
  }
  int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)) |
              SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db->db_, flags, nullptr) != SQLITE_OK)
    return db->error("cannot open the database");
  sqlite3_busy_timeout(db->db_, busy_ms);
  sqlite3_extended_result_codes(db->db_, 1);
  CM_TRY(db->exec("PRAGMA foreign_keys = ON"));
  // WAL: readers (status) never wait for a running tick's writes. (Set by
  // the first writer; it stays with the file.)
  if (!read_only) {
    CM_TRY(db->exec("PRAGMA journal_mode = WAL"));
    CM_TRY(db->exec("PRAGMA synchronous = NORMAL"));
    // The -wal and -shm files stay when the last writer closes: a reader
    // that may not create them (another user, a read-only mount) needs
    // them there.
    int persist = 1;
    sqlite3_file_control(db->db_, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
  }
  CM_ASSIGN(Stmt v, db->prepare("PRAGMA user_version"));
  CM_TRY(v.step());
  int64_t version = v.i64(0);
  if (version > static_cast<int64_t>(migrations.size()))
    return Error("'" + path + "' was written by a newer cm-sched (schema " + std::to_string(version) +
                     "; this one knows " + std::to_string(migrations.size()) + ")",
                 kExitBadInput);
  if (version < static_cast<int64_t>(migrations.size()) && read_only)
    return Error(
        "'" + path + "' has an older schema; a command that writes (cm-sched tick) brings it up to date",
        kExitFailure);
  if (version < static_cast<int64_t>(migrations.size())) {
    Transaction t(*db);
    CM_TRY(t.begin());
    // Read again under the write lock: another process may have migrated.
    CM_ASSIGN(Stmt again, db->prepare("PRAGMA user_version"));
    CM_TRY(again.step());
    for (size_t i = static_cast<size_t>(again.i64(0)); i < migrations.size(); i++)
      CM_TRY(db->exec(migrations[i]));
    CM_TRY(db->exec("PRAGMA user_version = " + std::to_string(migrations.size())));
    CM_TRY(t.commit());
  }
  return db;
}

Db::~Db() {
  if (db_ != nullptr)
    sqlite3_close_v2(db_);
}

Result<Stmt> Db::prepare(const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &st, nullptr) != SQLITE_OK)
    return error("cannot read");
  return Stmt(this, st);
}

Status Db::exec(const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    sqlite3_free(msg);
    return error("cannot update");
  }
  return {};
}

Status Db::begin() {
  return exec("BEGIN IMMEDIATE");
}
Status Db::commit() {
  return exec("COMMIT");
}
void Db::rollback() {
  (void)exec("ROLLBACK");
}
int64_t Db::last_insert_id() const {
  return sqlite3_last_insert_rowid(db_);
}
int Db::changes() const {
  return sqlite3_changes(db_);
}

}  // namespace cm::sched
