import { sql } from "drizzle-orm";
import type { BillingContext } from "../../src/billing/context.ts";
import type { FakeClock } from "../../src/clock.ts";
import { type Database, openDatabase, queryRows } from "../../src/db/client.ts";
import { darajaTimestamp } from "../../src/payments/mpesa/wire.ts";
import { callbackPaths } from "../../src/payments/routes.ts";
import { type Harness, startHarness, token } from "../payments/harness.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

/**
 * Two instances of the service on one PostgreSQL database: each has its own connection pool and its
 * own app on a real port. Instance A's Daraja fake accepts every push and never calls back, so a test
 * posts the STK callback itself (`fake.pushes[n].body`) at the moment it chooses.
 */
export interface TwoInstances {
  database: TestDatabase;
  second: Database;
  a: { ctx: BillingContext; h: Harness };
  b: { ctx: BillingContext; h: Harness };
  close(): Promise<void>;
}

export async function twoInstances(clock: FakeClock): Promise<TwoInstances> {
  const database = await createTestDatabase({ maxConnections: 12 });
  const second = await openDatabase({ databaseUrl: database.url, dataDir: "", maxConnections: 12 });
  const ctxA = billingContext(database.db, clock).ctx;
  const ctxB = billingContext(second.db, clock).ctx;
  const ha = await startHarness(ctxA, { fake: { defaultDelivery: { outcome: "success", lost: true } } });
  const hb = await startHarness(ctxB, { fake: { defaultDelivery: { outcome: "success", lost: true } } });
  return {
    database,
    second,
    a: { ctx: ctxA, h: ha },
    b: { ctx: ctxB, h: hb },
    async close() {
      await ha.close();
      await hb.close();
      await second.close();
      await database.close();
    },
  };
}

export async function postJson(url: string, body: unknown): Promise<number> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  return response.status;
}

/** A paybill confirmation as Daraja posts it (see `c2bBody` in wire.ts), answered by `h`'s app. */
export function postC2b(
  h: Harness,
  clock: FakeClock,
  input: { transId: string; account: string; shillings: number },
): Promise<number> {
  return postJson(`${h.baseUrl}${callbackPaths.c2bConfirmation(token)}`, {
    TransactionType: "Pay Bill",
    TransID: input.transId,
    TransTime: darajaTimestamp(clock.now()),
    TransAmount: input.shillings.toFixed(2),
    BusinessShortCode: h.fake.shortcode ?? "174379",
    BillRefNumber: input.account,
    InvoiceNumber: "",
    OrgAccountBalance: "0.00",
    ThirdPartyTransID: "",
    MSISDN: "2547 ***** 126",
    FirstName: "JOHN",
  });
}

/** Runs `work` for 0..n-1, `width` at a time (each wave starts together and is awaited whole). */
export async function inWaves<T>(n: number, width: number, work: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let start = 0; start < n; start += width) {
    const wave = Array.from({ length: Math.min(width, n - start) }, (_, k) => work(start + k));
    out.push(...(await Promise.all(wave)));
  }
  return out;
}

const intArray = (ids: number[]) => sql`${`{${ids.join(",")}}`}::int[]`;
const textArray = (values: string[]) => sql`${`{${values.join(",")}}`}::text[]`;

/**
 * Receipts that did not end up credited to the account they were paid to: no payment row (lost), a
 * payment still unmatched, or an applied payment without its ledger entry.
 */
export async function uncredited(
  db: Database["db"],
  expected: { receipt: string; customerId: number }[],
): Promise<string[]> {
  const found = await queryRows<{
    provider_ref: string;
    customer_id: number | null;
    status: string;
    n: number;
  }>(
    db,
    sql`select p.provider_ref, p.customer_id, p.status,
          (select count(*)::int from ledger_entries l where l.payment_id = p.id and l.kind = 'payment') as n
        from payments p where p.provider_ref = any(${textArray(expected.map((e) => e.receipt))})`,
  );
  const byRef = new Map(found.map((row) => [row.provider_ref, row]));
  const problems: string[] = [];
  for (const { receipt, customerId } of expected) {
    const row = byRef.get(receipt);
    if (!row) problems.push(`${receipt}: lost (no payment recorded)`);
    else if (row.status !== "applied" || Number(row.customer_id) !== customerId || Number(row.n) !== 1)
      problems.push(`${receipt}: ${row.status}, customer ${row.customer_id}, ${row.n} ledger entries`);
  }
  return problems;
}

/** Sum and count of the payment entries in these customers' ledgers. */
export async function paymentTotals(db: Database["db"], customerIds: number[]) {
  const [row] = await queryRows<{ n: number; cents: string }>(
    db,
    sql`select count(*)::int as n, coalesce(sum(amount_cents), 0)::text as cents from ledger_entries
        where kind = 'payment' and customer_id = any(${intArray(customerIds)})`,
  );
  return { count: Number(row?.n ?? 0), cents: Number(row?.cents ?? 0) };
}

/** Each customer's balance: the sum of their ledger entries. */
export async function balances(db: Database["db"], customerIds: number[]): Promise<Map<number, number>> {
  const rows = await queryRows<{ id: number; balance: string }>(
    db,
    sql`select c.id, coalesce(sum(l.amount_cents), 0)::text as balance
        from unnest(${intArray(customerIds)}) as c(id) left join ledger_entries l on l.customer_id = c.id
        group by c.id`,
  );
  return new Map(rows.map((r) => [Number(r.id), Number(r.balance)]));
}

/**
 * Customers whose invoices disagree with their ledger: what the open invoices still show as owed must
 * be exactly what the balance says is owed (so an invoice is paid iff the balance covers it, oldest
 * first), and every invoice has 0 ≤ paid ≤ amount and is `paid` exactly when fully paid.
 */
export async function inconsistentAccounts(db: Database["db"], customerIds: number[]): Promise<string[]> {
  const rows = await queryRows<{ id: number; balance: string; outstanding: string; bad: number }>(
    db,
    sql`
    with c(id) as (select unnest(${intArray(customerIds)})),
    b as (
      select c.id, coalesce(sum(l.amount_cents), 0) as balance
      from c left join ledger_entries l on l.customer_id = c.id group by c.id
    ),
    i as (
      select c.id,
        coalesce(sum(i.amount_cents - i.paid_cents) filter (where i.status = 'open'), 0) as outstanding,
        count(i.id) filter (where i.paid_cents < 0 or i.paid_cents > i.amount_cents
          or (i.status = 'paid') <> (i.paid_cents = i.amount_cents))::int as bad
      from c left join invoices i on i.customer_id = c.id and i.status <> 'void' group by c.id
    )
    select b.id, b.balance::text as balance, i.outstanding::text as outstanding, i.bad
    from b join i on i.id = b.id
    where i.outstanding <> greatest(0, -b.balance) or i.bad > 0
    order by b.id`,
  );
  return rows.map(
    (r) =>
      `customer ${r.id}: balance ${r.balance}, open invoices show ${r.outstanding} owed, ${r.bad} malformed invoices`,
  );
}

/** At most `n` examples and the total, so a failure names a few culprits without a wall of text. */
export function summary(problems: string[], n = 5): { count: number; examples: string[] } {
  return { count: problems.length, examples: problems.slice(0, n) };
}

export const none = { count: 0, examples: [] };
