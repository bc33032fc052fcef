import { spawn } from "node:child_process";
import * as fs from "node:fs";
const dir = fs.mkdtempSync("/tmp/sk-");
const p = spawn(process.execPath, ["dist/runtime/host/cli/main.js", "serve", "--dir", dir, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
let err = "";
p.on("exit", (c, sig) => console.log("EXIT", c, sig));
const url = await new Promise((res) => p.stderr.on("data", (c) => { err += c; const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m && /connect:/.test(err)) res(m[1]); }));
const tok = /admin token[^\n]*\n\s+(sk_\S+)/.exec(err)[1];
await fetch(`${url}/v1/databases`, { method: "POST", headers: { authorization: `Bearer ${tok}` }, body: JSON.stringify({ name: "app" }) });
const pl = async (requests, baton = null) => (await fetch(`${url}/db/app/v3/pipeline`, { method: "POST", headers: { authorization: `Bearer ${tok}` }, body: JSON.stringify({ baton, requests }) })).json();
const ex = (sql, args = []) => ({ type: "execute", stmt: { sql, args } });
const MODE = process.argv[2];
for (const t of ["a", "b", "c"]) {
  console.log(JSON.stringify(await pl([ex(`CREATE TABLE ${t}(id INTEGER PRIMARY KEY, v)`), ex(`INSERT INTO ${t}(v) VALUES (?), (?), (?), (?)`, [{type:"float", value: 2}, {type:"integer", value:"7"}, {type:"text", value:"x"}, {type:"blob", base64:"AQI="}]), ex(`SELECT typeof(v) AS t, v FROM ${t} ORDER BY id`), ex("SELECT ?", [{type:"integer", value:"-9223372036854775808"}]), {type:"close"}])).slice(0, 100));
}
for (const t of ["a", "b"]) {
  const r = await pl([{ type: "batch", batch: { steps: [{ stmt: { sql: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) SELECT i, 'row ' || i AS label FROM n" } }] } }, {type:"close"}]);
  console.log(r.results[0].type);
}
for (const t of ["a", "b", "c"]) {
  const r = await pl([{type:"store_sql", sql_id: 1, sql: `SELECT count(*) FROM ${t} WHERE v = ?`}, { type: "sequence", sql: `INSERT INTO ${t}(v) VALUES ('seq'); INSERT INTO ${t}(v) VALUES ('seq');` }, {type:"execute", stmt: {sql_id: 1, args: [{type:"text", value:"seq"}]}}, {type:"close"}]);
  console.log(JSON.stringify(r).slice(0, 300));
}
await new Promise(r => setTimeout(r, 300));
p.kill();
