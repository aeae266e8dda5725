// usage: node callers.mjs file fnName [depth] [from] [to]
import { readFileSync } from "node:fs";
const [file, name, depth = "4", from = "0", to = "1e9"] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const lab = (n) => `${n.callFrame.functionName || "(anon)"}@${n.callFrame.url.replace(/.*node_modules\//, "").replace(/.*\/work\/main\//, "").slice(-40)}:${n.callFrame.lineNumber}`;
const agg = new Map(); let t = p.startTime; let tot = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i]; const s = (t - p.startTime) / 1e6;
  if (s < +from || s > +to) continue;
  const n = byId.get(p.samples[i]);
  if (n.callFrame.functionName !== name) continue;
  const chain = []; let id = parent.get(n.id);
  while (id !== undefined && chain.length < +depth) { chain.push(lab(byId.get(id))); id = parent.get(id); }
  const k = chain.join(" < ");
  agg.set(k, (agg.get(k) ?? 0) + p.timeDeltas[i]); tot += p.timeDeltas[i];
}
console.log("total", (tot / 1000).toFixed(0));
for (const [k, v] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log((v / 1000).toFixed(0).padStart(6), k);
