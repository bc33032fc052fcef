/**
 * Selkie enclave ABI v1: the numeric facts of enclaves/ABI.md in one table.
 * Values here are fixed by the spec, never derived from declaration order.
 */
/** The measured ABI number (part of MRENCLAVE, ABI §5): bumped only by an incompatible change. */
export const ABI_VERSION = 1;
/** Revisions of version 1 (ABI.md heading): 2 grow hooks; 3 signatures (§6); 4 snapshot contract (§1.2); 5 memory-initializing start functions (§1); 6 EPC cap out of MRENCLAVE (§5), signed ISVPRODID, SQLite signer (§6.1), EINIT (§7), tables charged to the EPC, memory sections and unmetered grows refused (§1, §1.1, §1.3). */
export const ABI_REVISION = 6;

export const NS_SYS = "selkie:sys";
export const NS_FS = "selkie:fs";

type Sig = { params: readonly ("i32" | "i64" | "f64")[]; results: readonly ("i32" | "i64" | "f64")[] };
const sig = (params: Sig["params"], results: Sig["results"] = []): Sig => ({ params, results });

/** Every function an enclave may import, with its signature. Anything else is refused at load. */
export const OCALLS: Readonly<Record<string, Readonly<Record<string, Sig>>>> = {
  [NS_SYS]: {
    epc_grow: sig(["i32"], ["i32"]),
    random: sig(["i32", "i32"], ["i32"]),
    clock_ms: sig([], ["f64"]),
    log: sig(["i32", "i32", "i32"]),
    // Growth hooks that load-time instrumentation wraps around every memory.grow (ABI §2.1).
    memory_grow_pre: sig(["i32", "i32"], ["i32"]),
    memory_grow_post: sig(["i32", "i32"], ["i32"]),
  },
  [NS_FS]: {
    open: sig(["i32", "i32", "i32", "i32"], ["i32"]),
    close: sig(["i32"], ["i32"]),
    read: sig(["i32", "i32", "i32", "f64"], ["i32"]),
    write: sig(["i32", "i32", "i32", "f64"], ["i32"]),
    truncate: sig(["i32", "f64"], ["i32"]),
    sync: sig(["i32", "i32"], ["i32"]),
    size: sig(["i32"], ["f64"]),
    lock: sig(["i32", "i32"], ["i32"]),
    unlock: sig(["i32", "i32"], ["i32"]),
    check_reserved: sig(["i32"], ["i32"]),
    file_control: sig(["i32", "i32"], ["i32"]),
    device_characteristics: sig(["i32"], ["i32"]),
    delete: sig(["i32", "i32", "i32"], ["i32"]),
    access: sig(["i32", "i32", "i32"], ["i32"]),
  },
};

/** Names (in selkie:sys) of the hooks instrument.ts wraps around each memory.grow. */
export const GROW_HOOKS = { pre: "memory_grow_pre", post: "memory_grow_post" } as const;

/** The memory import every enclave must declare. */
export const MEMORY_IMPORT = { module: NS_SYS, name: "memory" } as const;

export const WASM_PAGE = 65536;

/** Column type codes returned by sk_column_type (ABI §3). */
export const COL_INTEGER = 1;
export const COL_FLOAT = 2;
export const COL_TEXT = 3;
export const COL_BLOB = 4;
export const COL_NULL = 5;
export const COL_BIGINT = 6;

/** Capabilities a manifest may request (ABI §4). */
export const PERMISSIONS = ["clock", "random", "net"] as const;
export type Permission = (typeof PERMISSIONS)[number];
