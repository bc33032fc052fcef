/*
** Selkie enclave: SQLite's OS layer (enclaves/ABI.md, sections 2.1 and 2.2).
**
** Built with -DSQLITE_OS_OTHER=1, so SQLite has no OS code of its own: every file operation is an
** ocall into the runtime ("selkie:fs"), and time, randomness, logging and heap growth are ocalls
** into "selkie:sys". Nothing here uses WASI.
**
** The runtime is trusted code, but every value it hands back is still checked before SQLite sees
** it (a file id > 0, a read count within 0..amt, a size that is an integral f64 in 0..2^53, a
** result code within the set that ABI.md allows for that ocall); anything else becomes an I/O
** error of the operation, never a crash or a silent wrong answer.
*/
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include "sqlite3.h"

#define SK_IMPORT(mod, name) __attribute__((import_module(mod), import_name(name)))

/* ---- selkie:sys ---------------------------------------------------------------------------- */
SK_IMPORT("selkie:sys", "epc_grow") int sk_sys_epc_grow(int delta_pages);
SK_IMPORT("selkie:sys", "random") int sk_sys_random(void *ptr, int len);
SK_IMPORT("selkie:sys", "clock_ms") double sk_sys_clock_ms(void);
SK_IMPORT("selkie:sys", "log") void sk_sys_log(int code, const char *ptr, int len);

/* ---- selkie:fs ----------------------------------------------------------------------------- */
SK_IMPORT("selkie:fs", "open") int sk_fs_open(const char *path, int path_len, int flags, int *out_fid);
SK_IMPORT("selkie:fs", "close") int sk_fs_close(int fid);
SK_IMPORT("selkie:fs", "read") int sk_fs_read(int fid, void *buf, int amt, double offset);
SK_IMPORT("selkie:fs", "write") int sk_fs_write(int fid, const void *buf, int amt, double offset);
SK_IMPORT("selkie:fs", "truncate") int sk_fs_truncate(int fid, double size);
SK_IMPORT("selkie:fs", "sync") int sk_fs_sync(int fid, int flags);
SK_IMPORT("selkie:fs", "size") double sk_fs_size(int fid);
SK_IMPORT("selkie:fs", "lock") int sk_fs_lock(int fid, int level);
SK_IMPORT("selkie:fs", "unlock") int sk_fs_unlock(int fid, int level);
SK_IMPORT("selkie:fs", "check_reserved") int sk_fs_check_reserved(int fid);
SK_IMPORT("selkie:fs", "file_control") int sk_fs_file_control(int fid, int op);
SK_IMPORT("selkie:fs", "device_characteristics") int sk_fs_device_characteristics(int fid);
SK_IMPORT("selkie:fs", "delete") int sk_fs_delete(const char *path, int path_len, int sync_dir);
SK_IMPORT("selkie:fs", "access") int sk_fs_access(const char *path, int path_len, int flags);

#define SK_SECTOR_SIZE 4096
#define SK_MAX_PATHNAME 512              /* the runtime refuses longer names as well */
#define SK_WASM_PAGE 65536
#define SK_MAX_PAGES 65535               /* keep the break representable in a 32-bit pointer */
#define SK_F64_INT_LIMIT 9007199254740992.0 /* 2^53 */
#define SK_UNIX_EPOCH_JD_MS 210866760000000LL /* Julian day of 1970-01-01 in ms */

/* ---- checking what the host returns -------------------------------------------------------- */

/* `code` is SQLITE_IOERR or one of its extended codes. */
static int sk_is_ioerr(int code) {
  return code > 0 && (code & 0xff) == SQLITE_IOERR;
}

/* A plain result code: allowed as is when it is 0, an IOERR* code (if `ioerr_ok`) or one of the
** `n` listed codes; anything else is replaced by `fallback`. */
static int sk_check_rc(int rc, int ioerr_ok, int fallback, int n, const int *allowed) {
  if (rc == SQLITE_OK || (ioerr_ok && sk_is_ioerr(rc))) return rc;
  for (int i = 0; i < n; i++) {
    if (rc == allowed[i]) return rc;
  }
  return fallback;
}

/* A negative result of read/size/access/check_reserved: the negated SQLite code. Only IOERR*
** codes pass through; anything else (including INT32_MIN) becomes `fallback`. */
static int sk_negative_rc(long long r, int fallback) {
  long long code = -r;
  if (code > 0 && code <= INT32_MAX && sk_is_ioerr((int)code)) return (int)code;
  return fallback;
}

/* ---- the file object ----------------------------------------------------------------------- */

typedef struct SelkieFile {
  sqlite3_file base;
  int fid;                               /* > 0 while open */
} SelkieFile;

static int sk_close(sqlite3_file *f) {
  SelkieFile *p = (SelkieFile *)f;
  int rc = sk_fs_close(p->fid);
  p->fid = 0;
  return rc == SQLITE_OK ? SQLITE_OK : SQLITE_IOERR_CLOSE;
}

static int sk_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off) {
  SelkieFile *p = (SelkieFile *)f;
  if (amt < 0 || off < 0 || (double)off + amt > SK_F64_INT_LIMIT) return SQLITE_IOERR_READ;
  int n = sk_fs_read(p->fid, buf, amt, (double)off);
  if (n < 0) return sk_negative_rc(n, SQLITE_IOERR_READ);
  if (n > amt) return SQLITE_IOERR_READ;
  if (n < amt) {
    /* End of file: SQLite requires the unread part to be zero-filled. */
    memset((char *)buf + n, 0, (size_t)(amt - n));
    return SQLITE_IOERR_SHORT_READ;
  }
  return SQLITE_OK;
}

static int sk_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off) {
  static const int allowed[] = {SQLITE_FULL, SQLITE_IOERR_WRITE};
  SelkieFile *p = (SelkieFile *)f;
  if (amt < 0 || off < 0 || (double)off + amt > SK_F64_INT_LIMIT) return SQLITE_IOERR_WRITE;
  return sk_check_rc(sk_fs_write(p->fid, buf, amt, (double)off), 0, SQLITE_IOERR_WRITE, 2, allowed);
}

static int sk_truncate(sqlite3_file *f, sqlite3_int64 size) {
  static const int allowed[] = {SQLITE_IOERR_TRUNCATE};
  SelkieFile *p = (SelkieFile *)f;
  if (size < 0 || (double)size > SK_F64_INT_LIMIT) return SQLITE_IOERR_TRUNCATE;
  return sk_check_rc(sk_fs_truncate(p->fid, (double)size), 0, SQLITE_IOERR_TRUNCATE, 1, allowed);
}

static int sk_sync(sqlite3_file *f, int flags) {
  static const int allowed[] = {SQLITE_IOERR_FSYNC};
  SelkieFile *p = (SelkieFile *)f;
  return sk_check_rc(sk_fs_sync(p->fid, flags), 0, SQLITE_IOERR_FSYNC, 1, allowed);
}

static int sk_file_size(sqlite3_file *f, sqlite3_int64 *pSize) {
  SelkieFile *p = (SelkieFile *)f;
  double d = sk_fs_size(p->fid);
  *pSize = 0;
  /* The comparisons are false for NaN, so NaN falls through to the error below. */
  if (d >= 0 && d < SK_F64_INT_LIMIT && d == (double)(sqlite3_int64)d) {
    *pSize = (sqlite3_int64)d;
    return SQLITE_OK;
  }
  if (d < 0 && d > -2147483649.0 && d == (double)(sqlite3_int64)d) {
    return sk_negative_rc((long long)d, SQLITE_IOERR_FSTAT);
  }
  return SQLITE_IOERR_FSTAT;
}

static int sk_lock(sqlite3_file *f, int level) {
  static const int allowed[] = {SQLITE_BUSY, SQLITE_IOERR_LOCK};
  SelkieFile *p = (SelkieFile *)f;
  return sk_check_rc(sk_fs_lock(p->fid, level), 0, SQLITE_IOERR_LOCK, 2, allowed);
}

static int sk_unlock(sqlite3_file *f, int level) {
  static const int allowed[] = {SQLITE_IOERR_UNLOCK};
  SelkieFile *p = (SelkieFile *)f;
  return sk_check_rc(sk_fs_unlock(p->fid, level), 0, SQLITE_IOERR_UNLOCK, 1, allowed);
}

static int sk_check_reserved_lock(sqlite3_file *f, int *pResOut) {
  SelkieFile *p = (SelkieFile *)f;
  int r = sk_fs_check_reserved(p->fid);
  *pResOut = 0;
  if (r == 0 || r == 1) {
    *pResOut = r;
    return SQLITE_OK;
  }
  return r < 0 ? sk_negative_rc(r, SQLITE_IOERR_CHECKRESERVEDLOCK) : SQLITE_IOERR_CHECKRESERVEDLOCK;
}

static int sk_file_control(sqlite3_file *f, int op, void *pArg) {
  static const int allowed[] = {SQLITE_NOTFOUND};
  SelkieFile *p = (SelkieFile *)f;
  (void)pArg;
  switch (op) {
    case SQLITE_FCNTL_SYNC:
    case SQLITE_FCNTL_COMMIT_PHASETWO:
    case SQLITE_FCNTL_BEGIN_ATOMIC_WRITE:
    case SQLITE_FCNTL_COMMIT_ATOMIC_WRITE:
    case SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE:
      return sk_check_rc(sk_fs_file_control(p->fid, op), 1, SQLITE_IOERR, 1, allowed);
    default:
      return SQLITE_NOTFOUND;
  }
}

static int sk_sector_size(sqlite3_file *f) {
  (void)f;
  return SK_SECTOR_SIZE;
}

static int sk_device_characteristics(sqlite3_file *f) {
  SelkieFile *p = (SelkieFile *)f;
  return sk_fs_device_characteristics(p->fid); /* ABI 2.2: used as returned */
}

static const sqlite3_io_methods sk_io_methods = {
  1, /* iVersion: no shared memory (no WAL), no mmap */
  sk_close,
  sk_read,
  sk_write,
  sk_truncate,
  sk_sync,
  sk_file_size,
  sk_lock,
  sk_unlock,
  sk_check_reserved_lock,
  sk_file_control,
  sk_sector_size,
  sk_device_characteristics,
  0, 0, 0, 0, /* xShmMap, xShmLock, xShmBarrier, xShmUnmap */
  0, 0,       /* xFetch, xUnfetch */
};

/* ---- the VFS ------------------------------------------------------------------------------- */

static int sk_name_len(const char *zName, int *pLen) {
  size_t n = strlen(zName);
  if (n > SK_MAX_PATHNAME) return SQLITE_CANTOPEN;
  *pLen = (int)n;
  return SQLITE_OK;
}

static int sk_open(sqlite3_vfs *vfs, sqlite3_filename zName, sqlite3_file *f, int flags,
                   int *pOutFlags) {
  static const int allowed[] = {SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_BUSY};
  SelkieFile *p = (SelkieFile *)f;
  int len = 0, fid = 0, rc;
  (void)vfs;
  p->base.pMethods = 0; /* on failure SQLite must not call xClose */
  p->fid = 0;
  if (zName && (rc = sk_name_len(zName, &len)) != SQLITE_OK) return rc;
  rc = sk_fs_open(zName ? zName : "", len, flags, &fid);
  rc = sk_check_rc(rc, 1, SQLITE_IOERR, 3, allowed);
  if (rc != SQLITE_OK) return rc;
  if (fid <= 0) return SQLITE_IOERR; /* "success" without a valid file id */
  p->fid = fid;
  p->base.pMethods = &sk_io_methods;
  if (pOutFlags) *pOutFlags = flags;
  return SQLITE_OK;
}

static int sk_delete(sqlite3_vfs *vfs, const char *zName, int syncDir) {
  static const int allowed[] = {SQLITE_IOERR_DELETE_NOENT, SQLITE_IOERR_DELETE};
  int len, rc;
  (void)vfs;
  if ((rc = sk_name_len(zName, &len)) != SQLITE_OK) return SQLITE_IOERR_DELETE;
  return sk_check_rc(sk_fs_delete(zName, len, syncDir), 0, SQLITE_IOERR_DELETE, 2, allowed);
}

static int sk_access(sqlite3_vfs *vfs, const char *zName, int flags, int *pResOut) {
  int len, r;
  (void)vfs;
  *pResOut = 0;
  if (sk_name_len(zName, &len) != SQLITE_OK) return SQLITE_OK; /* such a name cannot exist */
  r = sk_fs_access(zName, len, flags);
  if (r == 0 || r == 1) {
    *pResOut = r;
    return SQLITE_OK;
  }
  return r < 0 ? sk_negative_rc(r, SQLITE_IOERR_ACCESS) : SQLITE_IOERR_ACCESS;
}

/* Names are opaque to the guest: the "full" pathname is the name itself. */
static int sk_full_pathname(sqlite3_vfs *vfs, const char *zName, int nOut, char *zOut) {
  int len;
  (void)vfs;
  if (sk_name_len(zName, &len) != SQLITE_OK || len + 1 > nOut) return SQLITE_CANTOPEN;
  memcpy(zOut, zName, (size_t)len + 1);
  return SQLITE_OK;
}

/*
** Returns the number of bytes filled. Without the "random" permission (or on any host error)
** nothing is written and 0 is returned: we never invent randomness, and we never claim to have
** filled the buffer. SQLite ignores this count when it seeds its PRNG, so in that case the seed is
** whatever the buffer held before (SQLite's zero-initialised PRNG state): random(), randomblob()
** and journal nonces are then predictable, and an error is logged so the operator can see why.
*/
static int sk_randomness(sqlite3_vfs *vfs, int nByte, char *zOut) {
  int rc;
  (void)vfs;
  if (nByte <= 0) return 0;
  rc = sk_sys_random(zOut, nByte);
  if (rc != SQLITE_OK) {
    sqlite3_log(rc == SQLITE_PERM ? SQLITE_PERM : SQLITE_ERROR,
                "selkie: no randomness from the host (permission \"random\" missing?); "
                "the PRNG is not seeded");
    return 0;
  }
  return nByte;
}

/* Nothing to wait for inside an enclave (single-threaded, locks are the host's): return at once,
** reporting that no time was slept. */
static int sk_sleep(sqlite3_vfs *vfs, int microseconds) {
  (void)vfs;
  (void)microseconds;
  return 0;
}

static int sk_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *piNow) {
  double ms = sk_sys_clock_ms();
  (void)vfs;
  *piNow = 0;
  /* Also rejects NaN, and anything whose Julian-day value would not be exact in an f64. */
  if (!(ms >= 0 && ms < SK_F64_INT_LIMIT - (double)SK_UNIX_EPOCH_JD_MS)) return SQLITE_ERROR;
  *piNow = (sqlite3_int64)ms + SK_UNIX_EPOCH_JD_MS;
  return SQLITE_OK;
}

static int sk_current_time(sqlite3_vfs *vfs, double *pNow) {
  sqlite3_int64 now;
  int rc = sk_current_time_int64(vfs, &now);
  *pNow = rc == SQLITE_OK ? now / 86400000.0 : 0;
  return rc;
}

static int sk_get_last_error(sqlite3_vfs *vfs, int nBuf, char *zBuf) {
  (void)vfs;
  if (nBuf > 0) zBuf[0] = 0;
  return 0;
}

static sqlite3_vfs sk_vfs = {
  2,                  /* iVersion: has xCurrentTimeInt64 */
  sizeof(SelkieFile), /* szOsFile */
  SK_MAX_PATHNAME,    /* mxPathname */
  0,                  /* pNext */
  "selkie",           /* zName */
  0,                  /* pAppData */
  sk_open,
  sk_delete,
  sk_access,
  sk_full_pathname,
  0, 0, 0, 0,         /* xDlOpen, xDlError, xDlSym, xDlClose: no extensions */
  sk_randomness,
  sk_sleep,
  sk_current_time,
  sk_get_last_error,
  sk_current_time_int64,
  0, 0, 0,            /* iVersion 3 fields */
};

int sqlite3_os_init(void) {
  return sqlite3_vfs_register(&sk_vfs, 1);
}

int sqlite3_os_end(void) {
  return SQLITE_OK;
}

/* ---- error log -> selkie:sys.log ----------------------------------------------------------- */

static void sk_log_callback(void *arg, int code, const char *msg) {
  (void)arg;
  size_t n = msg ? strlen(msg) : 0;
  sk_sys_log(code, msg ? msg : "", n > INT32_MAX ? INT32_MAX : (int)n);
}

/* Runs from _initialize (the reactor's constructors), before SQLite initialises itself. */
__attribute__((constructor)) static void sk_configure(void) {
  sqlite3_config(SQLITE_CONFIG_LOG, sk_log_callback, (void *)0);
}

/* ---- heap growth -> selkie:sys.epc_grow ---------------------------------------------------- */

/*
** Replaces wasi-libc's sbrk (malloc's only way to get memory), so that every growth of the
** enclave's memory is asked of, and metered by, the runtime. Same contract as wasi-libc's:
** sbrk(0) is the current end of memory; growth only in whole 64 KiB pages; never shrinks.
** Where wasi-libc would abort (a negative or unaligned increment) this one refuses with EINVAL.
*/
void *sbrk(intptr_t increment) {
  uintptr_t pages = __builtin_wasm_memory_size(0);
  if (increment == 0) return (void *)(pages * SK_WASM_PAGE);
  if (increment < 0 || increment % SK_WASM_PAGE != 0) {
    errno = EINVAL;
    return (void *)-1;
  }
  uintptr_t delta = (uintptr_t)increment / SK_WASM_PAGE;
  if (pages > SK_MAX_PAGES || delta > SK_MAX_PAGES - pages) {
    errno = ENOMEM;
    return (void *)-1;
  }
  int old = sk_sys_epc_grow((int)delta);
  /* The host must have grown exactly our memory, from where we saw it. */
  if (old < 0 || (uintptr_t)old != pages || __builtin_wasm_memory_size(0) < pages + delta) {
    errno = ENOMEM;
    return (void *)-1;
  }
  return (void *)(pages * SK_WASM_PAGE);
}
