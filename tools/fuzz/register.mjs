// Loaded with `node --import` into the fuzzing worker (tools/fuzz/engine.ts starts it): installs the
// coverage map the instrumented modules write to, then the loader hook that instruments them.
//
// Why not Jazzer.js's own runner: @jazzer.js/core 4.0.0 installs, but its native libFuzzer addon
// (@jazzer.js/fuzzer, prebuilt only) needs GLIBC 2.38 and Debian 12 has 2.36 (dlopen fails:
// "version `GLIBC_2.38' not found"); version 2.1.0 downloads its binary from outside the npm registry
// at install or builds it with cmake-js from libFuzzer sources, neither of which this machine can
// fetch. Jazzer.js's instrumentor is plain JavaScript, so we keep it (the same edge counters and
// compare hooks libFuzzer would read) and drive it with our own mutation loop (engine.ts).
import { register } from "node:module";
import { installCoverage } from "./coverage.mjs";

installCoverage();
register(new URL("./loader.mjs", import.meta.url), import.meta.url);
