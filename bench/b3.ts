/**
 * B3: 100 concurrent USSD sessions walking the subscriber menu over HTTP (Africa's Talking form
 * posts to the real hono route on a real port) against PostgreSQL. Each session replays its whole
 * input history on every request, as Africa's Talking sends it, and most end with a confirmation
 * that records an STK intent.
 */

import { fork } from "node:child_process";
import cluster from "node:cluster";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { sql } from "drizzle-orm";
import { createApp } from "../src/app.ts";
import { defaultBillingSettings } from "../src/billing/context.ts";
import { systemClock } from "../src/clock.ts";
import { openDatabase } from "../src/db/client.ts";
import { createLogger } from "../src/logger.ts";
import { createMenuServices } from "../src/menu/services.ts";
import { createUssdRoutes } from "../src/ussd/routes.ts";
import { KeepAliveClient } from "./keep-alive-client.ts";
import { createBenchDatabase, percentile, round, seedMenuCustomers } from "./support.ts";

const SESSIONS_AT_ONCE = 100;
/**
 * Each simulated session sends its next input on a fixed beat (`B3_PACE_MS`, default 60 ms, so 100
 * sessions offer ~1,670 requests/s), whatever the previous answer's latency: an open-loop load, as
 * Africa's Talking's traffic is, so a slow answer shows up as latency instead of quietly lowering
 * the load. `B3_PACE_MS=0` sends each input as soon as the previous answer is in (closed loop: the
 * most the app can take, where latency is only queueing).
 */
const PACE_MS = Number(process.env.B3_PACE_MS ?? 60);
const CUSTOMERS = 400;
/** `B3_DEBUG=1` also shows when answers slower than this came. */
const SLOW_MS = 35;
const DURATION_MS = 15_000;
const WARMUP_MS = 2_000;
/**
 * App processes sharing the port (`B3_APP_PROCESSES`, default 1) and their connections in all
 * (`B3_POOL`, default 20). `B3_PROF=1` writes a CPU profile of each app process to /tmp/prof;
 * `B3_GC=1` prints their garbage collections.
 */
const APP_PROCESSES = Number(process.env.B3_APP_PROCESSES ?? 1);

/**
 * What people do: look at the account, pay, buy a voucher, look at a plan change, switch language.
 * The walks that end on a confirmation (`…*1`) record an STK intent or a language change.
 */
const customerWalks = [
  ["", "1", "1*0", "1*0*2", "1*0*2*1"],
  ["", "2", "2*2", "2*2*500", "2*2*500*1"],
  ["", "3", "3*1", "3*1*1"],
  ["", "4", "4*1", "4*1*0", "4*1*0*0", "4*1*0*0*6"],
  ["", "5", "5*2", "5*2*1", "5*2*1*1"],
];
const strangerWalks = [
  ["", "1", "1*98", "1*2", "1*2*1"],
  ["", "2", "2*0", "2*0*4"],
];
/** `B3_WALKS=browse` leaves out the confirmations, to see what reading alone costs. */
const browseOnly = process.env.B3_WALKS === "browse";
const walksOf = (walks: string[][]) =>
  browseOnly ? walks.map((w) => w.filter((t) => !/^(2\*2\*500|5\*2|1\*0\*2|3\*1|1\*2)\*1$/.test(t))) : walks;

export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl, 20);
  const db = database.db;
  await seedMenuCustomers(db, CUSTOMERS);
  const [{ name }] = (await db.execute(sql`select current_database() as name`)) as unknown as [
    { name: string },
  ];
  const appUrl = new URL(databaseUrl);
  appUrl.pathname = `/${name}`;

  // The app runs in APP_PROCESSES processes sharing the port (node:cluster), each with its own pool.
  cluster.setupPrimary({
    exec: fileURLToPath(import.meta.url),
    execArgv: [
      "--import",
      "tsx",
      ...(process.env.B3_PROF ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] : []),
      ...(process.env.B3_GC ? ["--trace-gc"] : []),
    ],
  });
  const apps = Array.from({ length: APP_PROCESSES }, () =>
    cluster.fork({ B3_APP_DATABASE_URL: appUrl.toString() }),
  );
  const ports = await Promise.all(
    apps.map(
      (app) =>
        new Promise<number>((resolve, reject) => {
          app.once("message", (message: { port: number }) => resolve(message.port));
          app.once("exit", (code) => reject(new Error(`app process exited with ${code}`)));
        }),
    ),
  );
  const port = ports[0]!;

  try {
    // The simulated phones run in a process of their own so they do not share the app's event loop.
    const child = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ["--import", "tsx"],
      env: { ...process.env, B3_LOAD_PORT: String(port) },
    });
    const result = await new Promise<{
      latencies: number[];
      elapsed: number;
      sessions: number;
      ended: number;
    }>((resolve, reject) => {
      child.once("message", (message) => resolve(message as never));
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`load generator exited with ${code}`)));
    });
    child.kill();
    const latencies = result.latencies.sort((a, b) => a - b);
    return {
      rps: round(latencies.length / (result.elapsed / 1000), 0),
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      requests: latencies.length,
      sessions: result.sessions,
      ended_sessions: result.ended,
      concurrency: SESSIONS_AT_ONCE,
      pace_ms: PACE_MS,
    };
  } finally {
    for (const app of apps) app.kill();
    await database.close();
  }
}

/** The load: SESSIONS_AT_ONCE phones, each dialling session after session until the time is up. */
async function load(port: number) {
  const phones = Array.from(
    { length: SESSIONS_AT_ONCE },
    () => new KeepAliveClient(port, "/ussd", ["Content-Type: application/x-www-form-urlencoded"]),
  );
  const latencies: number[] = [];
  const byStep: Record<string, number[]> = {};
  // Slow answers per tenth of a second since the load began: bunched together they are a stall
  // (a collection, a checkpoint), spread out they are a slow machine.
  const slowAt: Record<number, number> = {};
  const loadStarted = performance.now();
  // One continuous load: answers to inputs due in the measured window count, so the warm-up's end
  // is no barrier that would line all phones up into one burst.
  const measureFrom = loadStarted + WARMUP_MS;
  const measureUntil = measureFrom + DURATION_MS;
  let sessionNo = 0;
  let ended = 0;
  let strangerNo = 0;

  async function session(worker: number) {
    const handset = phones[worker]!;
    const id = ++sessionNo;
    const stranger = id % 4 === 0;
    const phone = stranger
      ? `+2541${String(10_000_000 + (++strangerNo % 5_000)).padStart(8, "0")}`
      : `+2547${String(10_000_000 + ((worker * 7 + id) % CUSTOMERS)).padStart(8, "0")}`;
    const walks = walksOf(stranger ? strangerWalks : customerWalks);
    const walk = walks[id % walks.length]!;
    let beat = performance.now();
    for (const text of walk) {
      // Latency counts from when the input was due, so a late answer also delays what follows it.
      const due = beat;
      if (due > performance.now()) await new Promise((r) => setTimeout(r, due - performance.now()));
      beat += PACE_MS;
      const body = new URLSearchParams({
        sessionId: `ATUid_b3_${id}`,
        serviceCode: "*384*123#",
        phoneNumber: phone,
        text,
        networkCode: "63902",
      }).toString();
      const started = Math.min(due, performance.now());
      const { status, text: answer } = await handset.post(body);
      if (status !== 200) throw new Error(`${status}: ${answer}`);
      if (due >= measureFrom && due < measureUntil) {
        const took = performance.now() - started;
        latencies.push(took);
        if (process.env.B3_DEBUG) {
          const key = `${stranger ? "s" : "c"}:${text}`;
          const seen = byStep[key] ?? [];
          seen.push(took);
          byStep[key] = seen;
          if (took > SLOW_MS) {
            const tenth = Math.floor((performance.now() - loadStarted) / 100);
            slowAt[tenth] = (slowAt[tenth] ?? 0) + 1;
          }
        }
      }
      if (!/^(CON|END) /.test(answer)) throw new Error(`not a USSD answer: ${answer}`);
      if (answer.startsWith("END")) {
        ended++;
        break;
      }
    }
  }

  await Promise.all(
    phones.map(async (_, worker) => {
      // Phones do not dial in step: each starts at its own point of the beat.
      await new Promise((r) => setTimeout(r, (worker * PACE_MS) / SESSIONS_AT_ONCE));
      while (performance.now() < measureUntil) await session(worker);
    }),
  );
  const elapsed = DURATION_MS;
  for (const phone of phones) phone.close();
  if (process.env.B3_DEBUG)
    for (const [k, v] of Object.entries(byStep)) {
      v.sort((a, b) => a - b);
      console.error(k.padEnd(24), v.length, round(percentile(v, 50)), round(percentile(v, 99)));
    }
  if (process.env.B3_DEBUG)
    console.error(`over ${SLOW_MS} ms, by 100 ms since start:`, JSON.stringify(slowAt));
  return { latencies, elapsed, sessions: sessionNo, ended };
}

/** One app process: the real hono app with the USSD routes on a shared port. */
async function serveApp(databaseUrl: string) {
  const database = await openDatabase({
    databaseUrl,
    dataDir: "",
    maxConnections: Math.ceil(Number(process.env.B3_POOL ?? 20) / APP_PROCESSES),
  });
  const db = database.db;
  const logger = createLogger("silent");
  const ctx = { db, clock: systemClock, settings: defaultBillingSettings };
  const app = createApp({
    db,
    logger,
    ussdRoutes: createUssdRoutes({
      db,
      services: createMenuServices(ctx),
      logger,
      settings: {
        isp: "Bench Net",
        support: "0700 000 000",
        timezone: "Africa/Nairobi",
        minPayCents: 1_000,
        maxPayCents: 150_000_00,
      },
    }),
  });
  const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
    process.send!({ port: info.port }),
  );
  process.on("SIGTERM", () => server.close(() => void database.close().then(() => process.exit(0))));
}

if (cluster.isWorker && process.env.B3_APP_DATABASE_URL) await serveApp(process.env.B3_APP_DATABASE_URL);

if (process.env.B3_LOAD_PORT && process.send) {
  const result = await load(Number(process.env.B3_LOAD_PORT));
  process.send(result, () => process.exit(0));
}
