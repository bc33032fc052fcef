/*
** Selkie enclave: the ecalls of the SQLite enclave (enclaves/ABI.md, section 3).
**
** Thin wrappers over SQLite's C API, one per export, with the ABI's types: handles and string
** pointers are i32 guest addresses, 53-bit integers travel as f64 and full 64-bit ones as i64.
** Strings from the host come as (pointer, byte length) and need no NUL.
*/
#include <stdint.h>
#include <string.h>
#include "sqlite3.h"

#define SK_EXPORT(name) __attribute__((export_name(name)))

/* Largest magnitude an f64 carries exactly (2^53 - 1), for INTEGER columns of type 1. */
#define SK_MAX_SAFE_INT 9007199254740991LL
#define SK_TWO_POW_53 9007199254740992.0

/* ---- memory -------------------------------------------------------------------------------- */

/* n == 0 still returns a unique pointer, so 0 always means "out of memory". */
SK_EXPORT("sk_malloc") void *sk_malloc(int n) {
  return n < 0 ? 0 : sqlite3_malloc64(n > 0 ? (sqlite3_uint64)n : 1);
}

SK_EXPORT("sk_free") void sk_free(void *p) {
  sqlite3_free(p);
}

SK_EXPORT("sk_libversion") const char *sk_libversion(void) {
  return sqlite3_libversion();
}

SK_EXPORT("sk_memory_used") double sk_memory_used(void) {
  return (double)sqlite3_memory_used();
}

SK_EXPORT("sk_memory_highwater") double sk_memory_highwater(int reset) {
  return (double)sqlite3_memory_highwater(reset);
}

SK_EXPORT("sk_release_memory") int sk_release_memory(int n) {
  return sqlite3_release_memory(n);
}

/* ---- connections --------------------------------------------------------------------------- */

/* SQLite counts an error's offset from the start of the statement it was preparing. After a
** failed sk_exec that statement may not be the first of the text, so sk_exec records where it
** began and the offset is reported relative to the whole text, as the host passed it. */
static sqlite3 *sk_exec_db;
static int sk_exec_base;

SK_EXPORT("sk_open") int sk_open(const char *path, int path_len, int flags, sqlite3 **out_db) {
  sqlite3 *db = 0;
  char *name;
  int rc;
  if (!out_db) return SQLITE_MISUSE;
  *out_db = 0;
  /* A NUL inside the name would make SQLite open a different file than the host asked for. */
  if (path_len < 0 || (path_len > 0 && (!path || memchr(path, 0, (size_t)path_len)))) {
    return SQLITE_MISUSE;
  }
  name = sqlite3_malloc64((sqlite3_uint64)path_len + 1);
  if (!name) return SQLITE_NOMEM;
  if (path_len > 0) memcpy(name, path, (size_t)path_len);
  name[path_len] = 0;
  rc = sqlite3_open_v2(name, &db, flags, "selkie");
  sqlite3_free(name);
  *out_db = db;
  return rc;
}

SK_EXPORT("sk_close") int sk_close(sqlite3 *db) {
  if (db == sk_exec_db) sk_exec_db = 0;
  return sqlite3_close_v2(db);
}

SK_EXPORT("sk_errcode") int sk_errcode(sqlite3 *db) {
  return sqlite3_extended_errcode(db);
}

SK_EXPORT("sk_errmsg") const char *sk_errmsg(sqlite3 *db) {
  return sqlite3_errmsg(db);
}

SK_EXPORT("sk_error_offset") int sk_error_offset(sqlite3 *db) {
  int off = sqlite3_error_offset(db);
  return (off >= 0 && db == sk_exec_db) ? off + sk_exec_base : off;
}

SK_EXPORT("sk_changes") double sk_changes(sqlite3 *db) {
  return (double)sqlite3_changes64(db);
}

SK_EXPORT("sk_total_changes") double sk_total_changes(sqlite3 *db) {
  return (double)sqlite3_total_changes64(db);
}

SK_EXPORT("sk_last_insert_rowid") sqlite3_int64 sk_last_insert_rowid(sqlite3 *db) {
  return sqlite3_last_insert_rowid(db);
}

/* Everything the host reports after running a statement, in one call: at out (24 bytes, 8-aligned):
** f64 changes, f64 total_changes, i64 last_insert_rowid. */
SK_EXPORT("sk_run_info") void sk_run_info(sqlite3 *db, double *out) {
  out[0] = (double)sqlite3_changes64(db);
  out[1] = (double)sqlite3_total_changes64(db);
  *(sqlite3_int64 *)(out + 2) = sqlite3_last_insert_rowid(db);
}

SK_EXPORT("sk_get_autocommit") int sk_get_autocommit(sqlite3 *db) {
  return sqlite3_get_autocommit(db);
}

/* Runs every statement of the text in turn, discarding rows; stops at (and returns) the first
** error, whose message stays available through sk_errmsg. */
SK_EXPORT("sk_exec") int sk_exec(sqlite3 *db, const char *sql, int sql_len) {
  const char *p = sql, *end;
  if (sql_len < 0 || (sql_len > 0 && !sql)) return SQLITE_MISUSE;
  end = sql + sql_len;
  sk_exec_db = db;
  sk_exec_base = 0;
  while (p < end) {
    sqlite3_stmt *stmt = 0;
    const char *tail = end;
    sk_exec_base = (int)(p - sql);
    int rc = sqlite3_prepare_v2(db, p, (int)(end - p), &stmt, &tail);
    if (rc != SQLITE_OK) return rc;
    if (stmt) {
      while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      }
      int frc = sqlite3_finalize(stmt); /* keeps the step's error code and message */
      if (rc != SQLITE_DONE) return frc != SQLITE_OK ? frc : rc;
    }
    if (tail <= p || tail > end) break; /* no progress: only whitespace or comments were left */
    p = tail;
  }
  return SQLITE_OK;
}

/* ---- statements ---------------------------------------------------------------------------- */

SK_EXPORT("sk_prepare")
int sk_prepare(sqlite3 *db, const char *sql, int sql_len, int flags, sqlite3_stmt **out_stmt,
               int *out_tail) {
  sqlite3_stmt *stmt = 0;
  const char *tail = sql;
  int rc;
  if (!out_stmt || !out_tail) return SQLITE_MISUSE;
  if (db == sk_exec_db) sk_exec_db = 0; /* offsets are now relative to this text */
  *out_stmt = 0;
  *out_tail = 0;
  if (sql_len < 0 || (sql_len > 0 && !sql)) return SQLITE_MISUSE;
  if (sql_len == 0) sql = tail = ""; /* an empty text is an empty statement, not a misuse */
  rc = sqlite3_prepare_v3(db, sql, sql_len, (unsigned int)flags, &stmt, &tail);
  *out_stmt = stmt;
  *out_tail = (tail && tail >= sql && tail <= sql + sql_len) ? (int)(tail - sql) : 0;
  return rc;
}

SK_EXPORT("sk_finalize") int sk_finalize(sqlite3_stmt *stmt) {
  return sqlite3_finalize(stmt);
}

SK_EXPORT("sk_reset") int sk_reset(sqlite3_stmt *stmt) {
  return sqlite3_reset(stmt);
}

SK_EXPORT("sk_clear_bindings") int sk_clear_bindings(sqlite3_stmt *stmt) {
  return sqlite3_clear_bindings(stmt);
}

SK_EXPORT("sk_step") int sk_step(sqlite3_stmt *stmt) {
  return sqlite3_step(stmt);
}

SK_EXPORT("sk_stmt_readonly") int sk_stmt_readonly(sqlite3_stmt *stmt) {
  return sqlite3_stmt_readonly(stmt);
}

/* sqlite3_stmt_status: the host reads SQLITE_STMTSTATUS_REPREPARE (5) to learn that a schema
** change re-prepared the statement, so its cached column names are stale. */
SK_EXPORT("sk_stmt_status") int sk_stmt_status(sqlite3_stmt *stmt, int op, int reset) {
  return sqlite3_stmt_status(stmt, op, reset);
}

/* ---- parameters (1-based) ------------------------------------------------------------------ */

SK_EXPORT("sk_bind_parameter_count") int sk_bind_parameter_count(sqlite3_stmt *stmt) {
  return sqlite3_bind_parameter_count(stmt);
}

SK_EXPORT("sk_bind_parameter_name") const char *sk_bind_parameter_name(sqlite3_stmt *stmt, int i) {
  return sqlite3_bind_parameter_name(stmt, i);
}

SK_EXPORT("sk_bind_null") int sk_bind_null(sqlite3_stmt *stmt, int i) {
  return sqlite3_bind_null(stmt, i);
}

/* v MUST be an integer within +-2^53 (ABI 3); anything else (a fraction, NaN, inf) is refused. */
SK_EXPORT("sk_bind_int") int sk_bind_int(sqlite3_stmt *stmt, int i, double v) {
  if (!(v >= -SK_TWO_POW_53 && v <= SK_TWO_POW_53) || v != (double)(sqlite3_int64)v) {
    return SQLITE_MISUSE;
  }
  return sqlite3_bind_int64(stmt, i, (sqlite3_int64)v);
}

SK_EXPORT("sk_bind_int64") int sk_bind_int64(sqlite3_stmt *stmt, int i, sqlite3_int64 v) {
  return sqlite3_bind_int64(stmt, i, v);
}

SK_EXPORT("sk_bind_double") int sk_bind_double(sqlite3_stmt *stmt, int i, double v) {
  return sqlite3_bind_double(stmt, i, v);
}

/* A zero length binds '' (SQLite would bind NULL for a null pointer, whatever the length). */
SK_EXPORT("sk_bind_text") int sk_bind_text(sqlite3_stmt *stmt, int i, const char *p, int len) {
  if (len < 0 || (len > 0 && !p)) return SQLITE_MISUSE;
  return sqlite3_bind_text(stmt, i, len == 0 ? "" : p, len, SQLITE_TRANSIENT);
}

/* A zero length binds an empty blob, not NULL. */
SK_EXPORT("sk_bind_blob") int sk_bind_blob(sqlite3_stmt *stmt, int i, const void *p, int len) {
  if (len < 0 || (len > 0 && !p)) return SQLITE_MISUSE;
  if (len == 0) return sqlite3_bind_zeroblob(stmt, i, 0);
  return sqlite3_bind_blob(stmt, i, p, len, SQLITE_TRANSIENT);
}

/* ---- result columns (0-based) -------------------------------------------------------------- */

SK_EXPORT("sk_column_count") int sk_column_count(sqlite3_stmt *stmt) {
  return sqlite3_column_count(stmt);
}

SK_EXPORT("sk_column_name") const char *sk_column_name(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_name(stmt, i);
}

SK_EXPORT("sk_column_decltype") const char *sk_column_decltype(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_decltype(stmt, i);
}

/* 1 INTEGER within +-(2^53-1), 2 FLOAT, 3 TEXT, 4 BLOB, 5 NULL, 6 INTEGER outside +-(2^53-1). */
SK_EXPORT("sk_column_type") int sk_column_type(sqlite3_stmt *stmt, int i) {
  int t = sqlite3_column_type(stmt, i);
  if (t == SQLITE_INTEGER) {
    sqlite3_int64 v = sqlite3_column_int64(stmt, i);
    return (v > SK_MAX_SAFE_INT || v < -SK_MAX_SAFE_INT) ? 6 : 1;
  }
  return t; /* SQLITE_FLOAT 2, SQLITE_TEXT 3, SQLITE_BLOB 4, SQLITE_NULL 5 */
}

SK_EXPORT("sk_column_int") double sk_column_int(sqlite3_stmt *stmt, int i) {
  return (double)sqlite3_column_int64(stmt, i);
}

SK_EXPORT("sk_column_int64") sqlite3_int64 sk_column_int64(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_int64(stmt, i);
}

SK_EXPORT("sk_column_double") double sk_column_double(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_double(stmt, i);
}

SK_EXPORT("sk_column_text") const unsigned char *sk_column_text(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_text(stmt, i);
}

SK_EXPORT("sk_column_blob") const void *sk_column_blob(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_blob(stmt, i);
}

SK_EXPORT("sk_column_bytes") int sk_column_bytes(sqlite3_stmt *stmt, int i) {
  return sqlite3_column_bytes(stmt, i);
}
