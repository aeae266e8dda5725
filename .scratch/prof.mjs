// usage: node prof.mjs file.cpuprofile [fromSec] [toSec] [mode=cat|fn]
import { readFileSync } from "node:fs";
const [file, from = "0", to = "1e9", mode = "cat"] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
let t = p.startTime; let total = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i];
  const s = (t - p.startTime) / 1e6;
  if (s < +from || s > +to) continue;
  const n = byId.get(p.samples[i]);
  const d = p.timeDeltas[i];
  const cf = n.callFrame;
  let key;
  if (mode === "fn") key = `${cf.functionName || "(anon)"} ${cf.url.replace(/.*node_modules\//, "nm:").replace(/.*\/work\/main\//, "")}:${cf.lineNumber}`;
  else {
    const u = cf.url;
    if (!u) key = cf.functionName;
    else if (u.includes("node_modules/")) key = "nm:" + u.split("node_modules/").pop().split("/").slice(0, u.split("node_modules/").pop().startsWith("@") ? 2 : 1).join("/");
    else if (u.includes("/work/main/")) key = u.replace(/.*\/work\/main\//, "").split("/").slice(0, 2).join("/");
    else key = "node:" + u.replace(/^node:/, "").split("/")[0];
  }
  self.set(key, (self.get(key) ?? 0) + d);
  total += d;
}
const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, +(process.env.TOP ?? 40));
console.log("total ms", (total / 1000).toFixed(0));
for (const [k, v] of rows) console.log((v / 1000).toFixed(0).padStart(7), ((100 * v) / total).toFixed(1).padStart(5) + "%", k);
