/**
 * B4: STK callbacks posted over HTTP to the app (the real hono routes on a real port) at 50-way
 * concurrency, 20 % of them duplicates of an earlier callback, against PostgreSQL. Every callback
 * settles its intent and credits the ledger in one transaction; duplicates must credit nothing.
 */

import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";
import { serve } from "@hono/node-server";
import { sql } from "drizzle-orm";
import { createApp } from "../src/app.ts";
import { defaultBillingSettings } from "../src/billing/context.ts";
import { systemClock } from "../src/clock.ts";
import { queryRows } from "../src/db/client.ts";
import { createLogger } from "../src/logger.ts";
import { callbackPaths, createMpesaRoutes } from "../src/payments/routes.ts";
import { createBenchDatabase, percentile, round } from "./support.ts";

const UNIQUE = 8_000;
const DUPLICATE_SHARE = 0.2;
const CONCURRENCY = 50;
const CUSTOMERS = 2_000;
const token = "b4benchtoken0123";

function callback(i: number, amountShillings: number) {
  return JSON.stringify({
    Body: {
      stkCallback: {
        MerchantRequestID: `b4-${i}`,
        CheckoutRequestID: `ws_CO_B4_${i}`,
        ResultCode: 0,
        ResultDesc: "The service request is processed successfully.",
        CallbackMetadata: {
          Item: [
            { Name: "Amount", Value: amountShillings },
            { Name: "MpesaReceiptNumber", Value: `B4R${String(i).padStart(7, "0")}` },
            { Name: "Balance" },
            { Name: "TransactionDate", Value: 20261125101010 },
            { Name: "PhoneNumber", Value: 254700000000 + (i % CUSTOMERS) },
          ],
        },
      },
    },
  });
}

export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl, 24);
  const db = database.db;
  try {
    await db.execute(sql`
      insert into customers (account_number, phone, name)
      select 'B4' || g, '+2547' || lpad(g::text, 8, '0'), 'Payer ' || g from generate_series(1, ${CUSTOMERS}::int) g`);
    const now = new Date();
    await db.execute(sql`
      insert into payment_intents (customer_id, phone, purpose, amount_cents, channel, status,
        merchant_request_id, checkout_request_id, sent_at, created_at, updated_at)
      select c.id, c.phone, 'balance', (100 + g % 400) * 100, 'bench', 'pending',
        'b4-' || g, 'ws_CO_B4_' || g, ${now.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
      from generate_series(1, ${UNIQUE}::int) g join customers c on c.account_number = 'B4' || (1 + g % ${CUSTOMERS})`);
    await db.execute(sql`analyze`);

    const ctx = { db, clock: systemClock, settings: defaultBillingSettings };
    const logger = createLogger("silent");
    const app = createApp({ db, logger, mpesaRoutes: createMpesaRoutes({ ctx, logger, token }) });
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
    await new Promise((r) => server.once("listening", r));
    const port = (server.address() as AddressInfo).port;
    const path = callbackPaths.stk(token);

    // 20 % of all posts repeat a callback already in the list (often while the first is in flight).
    const bodies: string[] = [];
    for (let i = 1; i <= UNIQUE; i++) bodies.push(callback(i, 100 + (i % 400)));
    const duplicates = Math.round((UNIQUE * DUPLICATE_SHARE) / (1 - DUPLICATE_SHARE));
    const posts = [...bodies];
    let seed = 42;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed;
    };
    for (let d = 0; d < duplicates; d++) {
      const at = next() % posts.length;
      posts.splice(at + 1 + (next() % 60), 0, bodies[next() % UNIQUE]!);
    }

    // The load generator runs on its own thread, so the server's event loop only serves.
    const { latencies, failures, seconds } = await generateLoad(port, path, posts);
    await new Promise<void>((resolve) => server.close(() => resolve()));

    const [check] = await queryRows<{
      credits: string;
      intents: string;
      credited: string;
      expected: string;
      doubled: string;
    }>(
      db,
      sql`select
        (select count(*) from ledger_entries where kind = 'payment') as credits,
        (select count(*) from payment_intents where status = 'succeeded') as intents,
        (select coalesce(sum(amount_cents), 0) from ledger_entries where kind = 'payment') as credited,
        (select coalesce(sum(amount_cents), 0) from payment_intents) as expected,
        (select count(*) from (select payment_id from ledger_entries where kind = 'payment'
           group by payment_id having count(*) > 1) d) as doubled`,
    );
    const credits = Number(check!.credits);
    return {
      per_second: round(posts.length / seconds, 1),
      posts: posts.length,
      unique: UNIQUE,
      duplicates,
      concurrency: CONCURRENCY,
      non_200: failures,
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      all_credited: credits === UNIQUE && Number(check!.credited) === Number(check!.expected),
      double_credits: credits - Number(check!.intents) + Number(check!.doubled),
    };
  } finally {
    await database.close();
  }
}

/** Posts every body at CONCURRENCY over keep-alive connections, from a worker thread. */
function generateLoad(
  port: number,
  path: string,
  posts: string[],
): Promise<{ latencies: number[]; failures: number; seconds: number }> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const { Agent, request } = require("node:http");
    const { port, path, posts, concurrency } = workerData;
    const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
    const post = (body) => new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, method: "POST", agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
      });
      req.on("error", reject);
      req.end(body);
    });
    (async () => {
      const latencies = [];
      let failures = 0;
      let cursor = 0;
      const started = performance.now();
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (cursor < posts.length) {
          const body = posts[cursor++];
          const t0 = performance.now();
          const status = await post(body);
          latencies.push(performance.now() - t0);
          if (status !== 200) failures++;
        }
      }));
      const seconds = (performance.now() - started) / 1000;
      agent.destroy();
      latencies.sort((a, b) => a - b);
      parentPort.postMessage({ latencies, failures, seconds });
    })();`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, {
      eval: true,
      workerData: { port, path, posts, concurrency: CONCURRENCY },
    });
    worker.once("message", (result) => {
      resolve(result as { latencies: number[]; failures: number; seconds: number });
      void worker.terminate();
    });
    worker.once("error", reject);
  });
}
