/**
 * Soak: many kill -9 trials against a sealed database writer (the suite runs 60).
 *   npm run soak:storage -- [trials] [seed]
 */
import { crashTrials } from "../../test/storage/crash-harness.js";

const trials = Number(process.argv[2] ?? 500);
const seed = Number(process.argv[3] ?? Date.now() % 1e9);
const t0 = performance.now();
console.log(`storage crash soak: ${trials} trials, seed ${seed}`);
const batches = await crashTrials(trials, seed);
console.log(`ok: ${trials} kill -9 trials, ${batches} batches committed, every acknowledged batch present and whole (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
