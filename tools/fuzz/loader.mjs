// ESM loader hook (runs on Node's loader thread): instruments the runtime's compiled modules
// (dist/runtime/**) with Jazzer.js's edge-coverage and compare-hook Babel plugins. Tests, tools and
// node_modules are left alone so that only the code under test is measured.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { sep } from "node:path";

const require = createRequire(import.meta.url);
const { transformSync } = require("@babel/core");
const { esmCodeCoverage } = require("@jazzer.js/instrumentor/dist/plugins/esmCodeCoverage.js");
const { compareHooks } = require("@jazzer.js/instrumentor/dist/plugins/compareHooks.js");

const INCLUDE = `${sep}dist${sep}runtime${sep}`;
/** The engine's own check (targets/self-check.ts) is instrumented too, so a test can see it work. */
const SELF_CHECK = `${sep}dist${sep}tools${sep}fuzz${sep}targets${sep}self-check.js`;

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (result.format !== "module" || !result.source || !url.startsWith("file://")) return result;
  const file = fileURLToPath(url);
  if (!(file.includes(INCLUDE) || file.endsWith(SELF_CHECK)) || file.includes(`${sep}node_modules${sep}`)) return result;
  const code = typeof result.source === "string" ? result.source : Buffer.from(result.source).toString("utf8");
  const coverage = esmCodeCoverage();
  const out = transformSync(code, { filename: file, plugins: [coverage.plugin, compareHooks], sourceType: "module", sourceMaps: false, configFile: false, babelrc: false });
  const edges = coverage.edgeCount();
  if (!out?.code || edges === 0) return result;
  return { ...result, source: `const __jazzer_cov = Fuzzer.coverageTracker.createModuleCounters(${edges});\n${out.code}` };
}
