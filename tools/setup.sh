#!/usr/bin/env bash
# Brings a checkout to a runnable state, idempotently: Debian packages, npm dependencies, the SQLite
# enclave (wasm) and the TypeScript build. Each step is skipped when already done.
# Used by `npm run demo` and `npm test` (README.md); safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# 1. Node.js >= 20
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] || fail "Node.js 20 or newer is needed (found $(node --version 2>/dev/null || echo none)). Install Node 20 and run this again."

# 2. Debian packages: the wasm toolchain (clang-19, lld-19, wasi-libc, compiler-rt for wasm32),
#    the stock sqlite3 shell (the tests check that our files open in it), and the model checker for
#    the migration protocol (spin, and gcc to compile the verifier it generates: npm run check:model).
packages=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 sqlite3 spin gcc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  for p in "${missing[@]}"; do
    case "$p" in
      spin|gcc) say "$p is needed to check the migration protocol's model (runtime/migration/model/, npm run check:model)" ;;
    esac
  done
  [ -f /etc/debian_version ] || fail "this is not Debian; install the equivalents of: ${missing[*]} (Selkie is tested on Debian 12)."
  if [ "$(id -u)" -eq 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    say "installing Debian packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    fail "missing Debian packages: ${missing[*]}. Run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}   then run this again."
  fi
fi

# 3. npm dependencies (reinstalled only when package-lock.json changed since the last install)
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  # better-sqlite3 (a dev dependency, the benchmarks' baseline) downloads a prebuilt binary; where that
  # fails, node-gyp compiles it and would fetch Node's headers from the internet. Point it at the
  # headers installed with Node itself so that path works offline.
  node_prefix=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
  if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then
    export npm_config_nodedir="$node_prefix"
  fi
  npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed (see above). If better-sqlite3 could neither download its prebuilt binary nor compile, install a C++ toolchain and Node's headers (apt-get install -y g++ make python3 libnode-dev), then run this again."
fi

# 4. The enclave modules: SQLite and the AssemblyScript example (cached: rebuilt only when their inputs change)
node tools/build-wasm.mjs
node tools/build-as.mjs   # the AssemblyScript example enclave (enclaves/counter-as/)

# 5. TypeScript -> dist/ (incremental)
if [ ! -f dist/.build-stamp ] || [ -n "$(find runtime test tools examples tsconfig.json package.json -newer dist/.build-stamp \( -name '*.ts' -o -name '*.json' \) -print -quit 2>/dev/null)" ]; then
  say "compiling TypeScript"
  npx tsc -p tsconfig.json
  touch dist/.build-stamp
fi
