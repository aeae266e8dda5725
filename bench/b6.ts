/**
 * B6: how long `npm start` takes to answer `/healthz` 200 on the embedded database: a fresh start
 * (an empty DATA_DIR) and a restart on the database that start left. Each is the median of three
 * runs. The baseline is a fresh start without the migrated copy `npm install` makes (the cluster
 * created and migrated from nothing), reported as a ratio. DATABASE_URL is not used: this is about
 * the embedded database.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, renameSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { makeEmbeddedTemplate, templatePath } from "../src/db/embedded-template.ts";
import { round } from "./support.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts the app as operators do, returns the ms until /healthz answered 200, and stops it. */
async function readyMs(dataDir: string): Promise<number> {
  const port = await freePort();
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(MPESA_|AT_|USSD_|TELEGRAM_|WHATSAPP_|DATABASE_URL|TANDAO_MODE|PORT|HOST)/.test(k),
    ),
  );
  const started = performance.now();
  const child = spawn("npm", ["start"], {
    cwd: root,
    env: {
      ...env,
      PORT: String(port),
      DATA_DIR: dataDir,
      LOG_LEVEL: "warn",
      TELEGRAM_SANDBOX_PORT: "0",
      WHATSAPP_SANDBOX_PORT: "0",
      TELEGRAM_ADMIN_SANDBOX_PORT: "0",
    },
    stdio: "ignore",
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return performance.now() - started;
      if (performance.now() - started > 60_000) throw new Error("the app did not become ready within 60 s");
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export default async function run() {
  // As `npm install` leaves it (a migration added since then needs a new copy).
  await makeEmbeddedTemplate();
  const fresh: number[] = [];
  const restart: number[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = mkdtempSync(path.join(tmpdir(), "tandao-b6-"));
    try {
      fresh.push(await readyMs(dir));
      restart.push(await readyMs(dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  // Baseline: the same fresh start with the migrated copy moved aside.
  const template = templatePath();
  const aside = `${template}.aside`;
  renameSync(template, aside);
  const baseline: number[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const dir = mkdtempSync(path.join(tmpdir(), "tandao-b6-"));
      try {
        baseline.push(await readyMs(dir));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    renameSync(aside, template);
  }
  return {
    ready_ms: round(median(fresh), 0),
    restart_ready_ms: round(median(restart), 0),
    baseline_fresh_ms: round(median(baseline), 0),
    ratio: round(median(baseline) / median(fresh), 2),
  };
}
