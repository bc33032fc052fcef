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
#define SK_IMPORT(mod, name) __attribute__((import_module(mod), import_name(name)))

/* The wall clock (selkie:sys, also used by the VFS): ms since the epoch, -1 when not granted. */
SK_IMPORT("selkie:sys", "clock_ms") double sk_sys_clock_ms(void);

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
  sqlite3_progress_handler(db, 0, 0, 0);
  sqlite3_set_authorizer(db, 0, 0);
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

static int sk_scope_check(sqlite3 *db, sqlite3_stmt *stmt);

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
    if (rc == SQLITE_OK) rc = sk_scope_check(db, stmt);
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
  if (rc == SQLITE_OK) rc = sk_scope_check(db, stmt);
  if (rc != SQLITE_OK) stmt = 0;
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

/* ---- limits: deadlines (progress handler) and token scopes (authorizer) -------------------- */
/*
** The host bounds what one caller can do with the connection, from inside SQLite:
**  - a deadline (ms since the epoch, read through selkie:sys.clock_ms): a progress handler checks
**    it every SK_PROGRESS_OPS virtual-machine instructions and interrupts the statement once it has
**    passed; SQLite then rolls the statement back (SQLITE_INTERRUPT) and the connection stays
**    usable. sk_deadline_hit tells the host the interrupt was this deadline's;
**  - a scope, enforced by an authorizer when a statement is prepared (and re-prepared):
**      0 everything (the local API's default),
**      1 read-write: no connection-wide or safety setting other clients share (see sk_rw_pragma),
**        no ATTACH/DETACH, no TEMP triggers or views (they would act on other clients' statements),
**      2 read-only: reads only (SELECT, read-only PRAGMAs, transactions and savepoints).
**    A refusal fails the prepare with SQLITE_AUTH; sk_denied describes what was refused.
** Both are per connection; the server has one connection per enclave.
*/
#define SK_PROGRESS_OPS 2000

static double sk_deadline_ms;
static int sk_deadline_hit_flag;
static int sk_scope;
static char sk_denied_buf[256];

static int sk_progress(void *arg) {
  double now;
  (void)arg;
  if (sk_deadline_ms <= 0) return 0;
  now = sk_sys_clock_ms();
  if (now >= 0 && now >= sk_deadline_ms) {
    sk_deadline_hit_flag = 1;
    return 1;
  }
  return 0;
}

/* ms <= 0 removes the deadline. Clears the "deadline hit" flag. */
SK_EXPORT("sk_set_deadline") int sk_set_deadline(sqlite3 *db, double ms) {
  sk_deadline_hit_flag = 0;
  sk_deadline_ms = (ms > 0) ? ms : 0;
  sqlite3_progress_handler(db, sk_deadline_ms > 0 ? SK_PROGRESS_OPS : 0, sk_deadline_ms > 0 ? sk_progress : 0, 0);
  return SQLITE_OK;
}

/* 1 when the last interrupt came from the deadline. */
SK_EXPORT("sk_deadline_hit") int sk_deadline_hit(void) {
  return sk_deadline_hit_flag;
}

static int sk_in_list(const char *name, const char *const *list) {
  if (!name) return 0;
  for (; *list; list++) {
    if (sqlite3_stricmp(name, *list) == 0) return 1;
  }
  return 0;
}

/* PRAGMAs that only describe the schema or check the database (any argument names what to look at). */
static const char *const sk_introspect_pragmas[] = {
  "table_info", "table_xinfo", "table_list", "index_info", "index_xinfo", "index_list",
  "foreign_key_list", "foreign_key_check", "database_list", "collation_list", "function_list",
  "module_list", "pragma_list", "compile_options", "data_version", "page_count", "freelist_count",
  "integrity_check", "quick_check", 0};

/* PRAGMAs whose current value any token may read (without an argument). */
static const char *const sk_readable_pragmas[] = {
  "user_version", "application_id", "schema_version", "page_size", "encoding", "auto_vacuum",
  "max_page_count", "cache_size", "journal_mode", "synchronous", "foreign_keys", "locking_mode",
  "query_only", "defer_foreign_keys", "recursive_triggers", "automatic_index", "busy_timeout",
  "temp_store", "secure_delete", "cell_size_check", "case_sensitive_like", "legacy_alter_table",
  "trusted_schema", "ignore_check_constraints", "writable_schema", "hard_heap_limit",
  "soft_heap_limit", "cache_spill", "mmap_size", "journal_size_limit", "analysis_limit",
  "threads", "reverse_unordered_selects", "fullfsync", "checkpoint_fullfsync", 0};

/* PRAGMAs a read-write token may give a value: the database's own content, or this transaction. */
static const char *const sk_rw_settable_pragmas[] = {
  "user_version", "application_id", "defer_foreign_keys", "optimize", "incremental_vacuum", 0};

static int sk_pragma_ok(int scope, const char *name, const char *value) {
  if (sk_in_list(name, sk_introspect_pragmas)) return 1;
  if (scope == 2) return value == 0 && sk_in_list(name, sk_readable_pragmas);
  /* read-write: reading any setting or running an action without argument (optimize,
  ** shrink_memory, incremental_vacuum) is fine; giving a value only to its own content. */
  return value == 0 || sk_in_list(name, sk_rw_settable_pragmas);
}

static const char *sk_action_name(int action) {
  switch (action) {
    case SQLITE_CREATE_INDEX: return "CREATE INDEX";
    case SQLITE_CREATE_TABLE: return "CREATE TABLE";
    case SQLITE_CREATE_TEMP_INDEX: return "CREATE TEMP INDEX";
    case SQLITE_CREATE_TEMP_TABLE: return "CREATE TEMP TABLE";
    case SQLITE_CREATE_TEMP_TRIGGER: return "CREATE TEMP TRIGGER";
    case SQLITE_CREATE_TEMP_VIEW: return "CREATE TEMP VIEW";
    case SQLITE_CREATE_TRIGGER: return "CREATE TRIGGER";
    case SQLITE_CREATE_VIEW: return "CREATE VIEW";
    case SQLITE_DELETE: return "DELETE";
    case SQLITE_DROP_INDEX: return "DROP INDEX";
    case SQLITE_DROP_TABLE: return "DROP TABLE";
    case SQLITE_DROP_TEMP_INDEX: return "DROP TEMP INDEX";
    case SQLITE_DROP_TEMP_TABLE: return "DROP TEMP TABLE";
    case SQLITE_DROP_TEMP_TRIGGER: return "DROP TEMP TRIGGER";
    case SQLITE_DROP_TEMP_VIEW: return "DROP TEMP VIEW";
    case SQLITE_DROP_TRIGGER: return "DROP TRIGGER";
    case SQLITE_DROP_VIEW: return "DROP VIEW";
    case SQLITE_INSERT: return "INSERT";
    case SQLITE_PRAGMA: return "PRAGMA";
    case SQLITE_UPDATE: return "UPDATE";
    case SQLITE_ATTACH: return "ATTACH";
    case SQLITE_DETACH: return "DETACH";
    case SQLITE_ALTER_TABLE: return "ALTER TABLE";
    case SQLITE_REINDEX: return "REINDEX";
    case SQLITE_ANALYZE: return "ANALYZE";
    case SQLITE_CREATE_VTABLE: return "CREATE VIRTUAL TABLE";
    case SQLITE_DROP_VTABLE: return "DROP VIRTUAL TABLE";
    default: return "statement";
  }
}

static int sk_authorize(void *arg, int action, const char *a1, const char *a2, const char *dbname,
                        const char *trigger) {
  int scope = sk_scope, ok;
  (void)arg;
  (void)dbname;
  (void)trigger;
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      ok = 1;
      break;
    case SQLITE_PRAGMA:
      ok = sk_pragma_ok(scope, a1, a2);
      break;
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
      ok = 0;
      break;
    default:
      ok = scope == 1; /* every other write is a read-write token's to make */
      break;
  }
  if (ok) return SQLITE_OK;
  if (action == SQLITE_PRAGMA) {
    sqlite3_snprintf((int)sizeof sk_denied_buf, sk_denied_buf, a2 ? "PRAGMA %.60s = %.60s" : "PRAGMA %.60s", a1 ? a1 : "?", a2 ? a2 : "");
  } else if (action == SQLITE_ATTACH && a1) {
    sqlite3_snprintf((int)sizeof sk_denied_buf, sk_denied_buf, "ATTACH %.100Q", a1);
  } else if (a1 && action != SQLITE_TRANSACTION) {
    sqlite3_snprintf((int)sizeof sk_denied_buf, sk_denied_buf, "%s %.100s", sk_action_name(action), a1);
  } else {
    sqlite3_snprintf((int)sizeof sk_denied_buf, sk_denied_buf, "%s", sk_action_name(action));
  }
  return SQLITE_DENY;
}

/* Skips whitespace and SQL comments. */
static const char *sk_skip_space(const char *p) {
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f') p++;
    if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n') p++;
    } else if (p[0] == '/' && p[1] == '*') {
      p += 2;
      while (*p && !(p[0] == '*' && p[1] == '/')) p++;
      if (*p) p += 2;
    } else {
      return p;
    }
  }
}

/*
** What the authorizer cannot see, checked after a prepare under the read-only scope: a statement
** that takes the write lock (BEGIN IMMEDIATE/EXCLUSIVE, anything sqlite3_stmt_readonly calls a
** write) and a REINDEX of everything (SQLite asks the authorizer only about a named REINDEX).
** A refused statement is finalized and the prepare fails with SQLITE_AUTH.
*/
static int sk_scope_check(sqlite3 *db, sqlite3_stmt *stmt) {
  const char *p;
  (void)db;
  if (!stmt || sk_scope != 2) return SQLITE_OK;
  p = sk_skip_space(sqlite3_sql(stmt));
  if (sqlite3_strnicmp(p, "REINDEX", 7) == 0 && !((p[7] >= 'a' && p[7] <= 'z') || (p[7] >= 'A' && p[7] <= 'Z') || (p[7] >= '0' && p[7] <= '9') || p[7] == '_')) {
    sqlite3_snprintf((int)sizeof sk_denied_buf, sk_denied_buf, "REINDEX");
  } else if (!sqlite3_stmt_readonly(stmt)) {
    sqlite3_snprintf((int)sizeof sk_denied_buf, sk_denied_buf, "%.40s (it takes the write lock)", p);
  } else {
    return SQLITE_OK;
  }
  sqlite3_finalize(stmt);
  return SQLITE_AUTH;
}

/* 0 everything, 1 read-write, 2 read-only (see above); anything else is a misuse. */
SK_EXPORT("sk_set_scope") int sk_set_scope(sqlite3 *db, int scope) {
  if (scope < 0 || scope > 2) return SQLITE_MISUSE;
  sk_scope = scope;
  sk_denied_buf[0] = 0;
  return sqlite3_set_authorizer(db, scope == 0 ? 0 : sk_authorize, 0);
}

/* What the authorizer refused last (NUL-terminated, empty when nothing was). */
SK_EXPORT("sk_denied") const char *sk_denied(void) {
  return sk_denied_buf;
}
