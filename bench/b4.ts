/**
 * B4: M-Pesa callbacks posted over HTTP to the app (the real hono routes on a real port) against
 * PostgreSQL, from 50 concurrent senders:
 * - 8,000 STK callbacks, each for its own pending intent, spread over 2,000 accounts;
 * - 1,000 accounts that each owe KES 1,500 and get two different payments at the same moment (one
 *   sender posts both at once), KES 1,000 then a paybill (C2B) confirmation of KES 700: the first is
 *   a paybill confirmation for 500 accounts, an STK callback for the other 500. These pairs are 16 %
 *   of all posts. (Another amount than the push's: M-Pesa refuses the same amount from one payer to
 *   one receiver within two minutes, so a confirmation of the push's amount would be the push's own);
 * - 20 % of all posts repeat an earlier one (often while the first is in flight).
 * Every distinct receipt must be credited once: `lost` counts receipts sent but neither credited nor
 * waiting in the unmatched queue (a repeat of a confirmation that failed can still credit it, as it
 * would in production), `double_credits` credits beyond one per receipt sent.
 * Goal: ≥ 1,500 callbacks/s, 0 lost, 0 double credits.
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
import { darajaTimestamp } from "../src/payments/mpesa/wire.ts";
import { callbackPaths, createMpesaRoutes } from "../src/payments/routes.ts";
import { createBenchDatabase, percentile, round } from "./support.ts";

const UNIQUE = 8_000;
const DUPLICATE_SHARE = 0.2;
const CONCURRENCY = 50;
const CUSTOMERS = 2_000;
/** Accounts that get two different payments at once; the first half two C2B, the rest STK + C2B. */
const PAIR_ACCOUNTS = 1_000;
const PAIR_OWED_SHILLINGS = 1_500;
const PAIR_FIRST_SHILLINGS = 1_000;
const PAIR_SECOND_SHILLINGS = 700;
const token = "b4benchtoken0123";

/** Route of a post: 0 = STK callback, 1 = C2B confirmation. */
type Post = [route: 0 | 1, body: string];

const receipt = (prefix: string, i: number) => `${prefix}${String(i).padStart(7, "0")}`;

function stkCallback(
  checkout: string,
  receiptNumber: string,
  amountShillings: number,
  phone: number,
): string {
  return JSON.stringify({
    Body: {
      stkCallback: {
        MerchantRequestID: `m-${checkout}`,
        CheckoutRequestID: checkout,
        ResultCode: 0,
        ResultDesc: "The service request is processed successfully.",
        CallbackMetadata: {
          Item: [
            { Name: "Amount", Value: amountShillings },
            { Name: "MpesaReceiptNumber", Value: receiptNumber },
            { Name: "Balance" },
            { Name: "TransactionDate", Value: 20261125101010 },
            { Name: "PhoneNumber", Value: phone },
          ],
        },
      },
    },
  });
}

/** A paybill confirmation as Daraja posts it (see `c2bBody` in src/payments/mpesa/wire.ts). */
function c2bConfirmation(transId: string, account: string, amountShillings: number): string {
  return JSON.stringify({
    TransactionType: "Pay Bill",
    TransID: transId,
    TransTime: darajaTimestamp(new Date()),
    TransAmount: amountShillings.toFixed(2),
    BusinessShortCode: "174379",
    BillRefNumber: account,
    InvoiceNumber: "",
    OrgAccountBalance: "0.00",
    ThirdPartyTransID: "",
    MSISDN: "2547 ***** 126",
    FirstName: "JOHN",
    MiddleName: "",
    LastName: "",
  });
}

export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl, 24);
  const db = database.db;
  try {
    const now = new Date().toISOString();
    await db.execute(sql`
      insert into customers (account_number, phone, name)
      select 'B4' || g, '+2547' || lpad(g::text, 8, '0'), 'Payer ' || g from generate_series(1, ${CUSTOMERS}::int) g`);
    await db.execute(sql`
      insert into payment_intents (customer_id, phone, purpose, amount_cents, channel, status,
        merchant_request_id, checkout_request_id, sent_at, created_at, updated_at)
      select c.id, c.phone, 'balance', (100 + g % 400) * 100, 'bench', 'pending',
        'b4-' || g, 'ws_CO_B4_' || g, ${now}::timestamptz, ${now}::timestamptz, ${now}::timestamptz
      from generate_series(1, ${UNIQUE}::int) g join customers c on c.account_number = 'B4' || (1 + g % ${CUSTOMERS})`);
    // The pair accounts owe KES 1,500 on an open invoice (charged in their ledger).
    await db.execute(sql`
      insert into customers (account_number, phone, name)
      select 'B4P' || g, '+2541' || lpad(g::text, 8, '0'), 'Pair payer ' || g
      from generate_series(1, ${PAIR_ACCOUNTS}::int) g`);
    await db.execute(sql`
      with issued as (
        insert into invoices (customer_id, kind, amount_cents, due_at, issued_at)
        select c.id, 'manual', ${PAIR_OWED_SHILLINGS * 100}, ${now}::timestamptz, ${now}::timestamptz
        from customers c where c.account_number like 'B4P%'
        returning id, customer_id, amount_cents
      )
      insert into ledger_entries (customer_id, kind, amount_cents, invoice_id, memo, created_at)
      select customer_id, 'invoice', -amount_cents, id, 'Owed before the bench', ${now}::timestamptz from issued`);
    const stkPairs = PAIR_ACCOUNTS / 2;
    await db.execute(sql`
      insert into payment_intents (customer_id, phone, purpose, amount_cents, channel, status,
        merchant_request_id, checkout_request_id, sent_at, created_at, updated_at)
      select c.id, c.phone, 'balance', ${PAIR_FIRST_SHILLINGS * 100}, 'bench', 'pending',
        'b4p-' || g, 'ws_CO_B4P_' || g, ${now}::timestamptz, ${now}::timestamptz, ${now}::timestamptz
      from generate_series(${PAIR_ACCOUNTS - stkPairs + 1}::int, ${PAIR_ACCOUNTS}::int) g
      join customers c on c.account_number = 'B4P' || g`);
    await db.execute(sql`analyze`);

    const ctx = { db, clock: systemClock, settings: defaultBillingSettings };
    const logger = createLogger("silent");
    const app = createApp({ db, logger, mpesaRoutes: createMpesaRoutes({ ctx, logger, token }) });
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
    await new Promise((r) => server.once("listening", r));
    const port = (server.address() as AddressInfo).port;
    const paths = [callbackPaths.stk(token), callbackPaths.c2bConfirmation(token)];

    let seed = 42;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed;
    };
    // Every distinct post (one per receipt) and what it should credit.
    const singles: Post[] = [];
    let expectedCents = 0;
    for (let i = 1; i <= UNIQUE; i++) {
      const shillings = 100 + (i % 400);
      singles.push([
        0,
        stkCallback(`ws_CO_B4_${i}`, receipt("B4R", i), shillings, 254700000000 + (i % CUSTOMERS)),
      ]);
      expectedCents += shillings * 100;
    }
    const groups: Post[][] = singles.map((post) => [post]);
    const pairPosts: Post[] = [];
    for (let g = 1; g <= PAIR_ACCOUNTS; g++) {
      const account = `B4P${g}`;
      const second: Post = [1, c2bConfirmation(receipt("B4D", g), account, PAIR_SECOND_SHILLINGS)];
      const first: Post =
        g <= PAIR_ACCOUNTS - stkPairs
          ? [1, c2bConfirmation(receipt("B4C", g), account, PAIR_FIRST_SHILLINGS)]
          : [0, stkCallback(`ws_CO_B4P_${g}`, receipt("B4S", g), PAIR_FIRST_SHILLINGS, 254100000000 + g)];
      pairPosts.push(first, second);
      expectedCents += (PAIR_FIRST_SHILLINGS + PAIR_SECOND_SHILLINGS) * 100;
      // Both payments of a pair go out together, somewhere in the stream.
      groups.splice(next() % (groups.length + 1), 0, [first, second]);
    }
    const distinct = [...singles, ...pairPosts];
    // 20 % of all posts repeat one already in the list (often while the first is in flight).
    const duplicates = Math.round((distinct.length * DUPLICATE_SHARE) / (1 - DUPLICATE_SHARE));
    for (let d = 0; d < duplicates; d++) {
      const at = next() % groups.length;
      groups.splice(at + 1 + (next() % 60), 0, [distinct[next() % distinct.length]!]);
    }
    const posts = groups.reduce((n, g) => n + g.length, 0);

    // The load generator runs on its own thread, so the server's event loop only serves.
    const { latencies, failures, serverErrors, seconds } = await generateLoad(port, paths, groups);
    await new Promise<void>((resolve) => server.close(() => resolve()));

    const [check] = await queryRows<{
      credits: string;
      credited_receipts: string;
      unmatched: string;
      credited_cents: string;
      doubled: string;
      disagreeing: string;
      inbox_failed: string;
    }>(
      db,
      sql`select
        (select count(*) from ledger_entries where kind = 'payment') as credits,
        (select count(distinct p.provider_ref) from ledger_entries l join payments p on p.id = l.payment_id
           where l.kind = 'payment' and p.provider_ref like 'B4%') as credited_receipts,
        (select count(*) from payments where status = 'unmatched' and provider_ref like 'B4%') as unmatched,
        (select coalesce(sum(amount_cents), 0) from ledger_entries where kind = 'payment') as credited_cents,
        (select count(*) from (select payment_id from ledger_entries where kind = 'payment'
           group by payment_id having count(*) > 1) d) as doubled,
        -- Accounts whose open invoices do not show what the ledger says they owe.
        (select count(*) from (
           select c.id from customers c
           where coalesce((select sum(i.amount_cents - i.paid_cents) from invoices i
                           where i.customer_id = c.id and i.status = 'open'), 0)
             <> greatest(0, -coalesce((select sum(l.amount_cents) from ledger_entries l where l.customer_id = c.id), 0))
         ) d) as disagreeing,
        -- Requests stored but not processed (where the service keeps an inbox of M-Pesa requests).
        (select count(*) from mpesa_callbacks m where to_jsonb(m)->>'status' = 'failed') as inbox_failed`,
    );
    const sent = distinct.length;
    const accounted = Number(check!.credited_receipts) + Number(check!.unmatched);
    return {
      per_second: round(posts / seconds, 1),
      posts,
      unique: sent,
      duplicates,
      pair_posts: pairPosts.length,
      pair_share: round(pairPosts.length / posts, 3),
      concurrency: CONCURRENCY,
      non_200: failures,
      status_5xx: serverErrors,
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      all_credited:
        Number(check!.credited_receipts) === sent && Number(check!.credited_cents) === expectedCents,
      lost: sent - accounted,
      double_credits: Number(check!.credits) - Number(check!.credited_receipts) + Number(check!.doubled),
      invoices_disagreeing_with_ledger: Number(check!.disagreeing),
      inbox_failed: Number(check!.inbox_failed),
    };
  } finally {
    await database.close();
  }
}

/**
 * Posts every group from CONCURRENCY senders over keep-alive connections, from a worker thread. A
 * sender posts the requests of one group at the same moment (two payments for one account).
 */
function generateLoad(
  port: number,
  paths: string[],
  groups: Post[][],
): Promise<{ latencies: number[]; failures: number; serverErrors: number; seconds: number }> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const { Agent, request } = require("node:http");
    const { port, paths, groups, concurrency } = workerData;
    const agent = new Agent({ keepAlive: true, maxSockets: 2 * concurrency });
    const post = (path, body) => new Promise((resolve, reject) => {
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
      let serverErrors = 0;
      let cursor = 0;
      const started = performance.now();
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (cursor < groups.length) {
          const group = groups[cursor++];
          await Promise.all(group.map(async ([route, body]) => {
            const t0 = performance.now();
            const status = await post(paths[route], body);
            latencies.push(performance.now() - t0);
            if (status !== 200) failures++;
            if (status >= 500) serverErrors++;
          }));
        }
      }));
      const seconds = (performance.now() - started) / 1000;
      agent.destroy();
      latencies.sort((a, b) => a - b);
      parentPort.postMessage({ latencies, failures, serverErrors, seconds });
    })();`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, {
      eval: true,
      workerData: { port, paths, groups, concurrency: CONCURRENCY },
    });
    worker.once("message", (result) => {
      resolve(result as { latencies: number[]; failures: number; serverErrors: number; seconds: number });
      void worker.terminate();
    });
    worker.once("error", reject);
  });
}
