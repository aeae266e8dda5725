import { createHash } from "node:crypto";
import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { ts } from "../db/params.ts";
import { requireBox } from "../db/sealed.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { analyse } from "./import/analyse.ts";
import type { ImportOptions, ImportReport, NewRow } from "./import/format.ts";
import { assertCovers, lockCustomerMoney } from "./money-lock.ts";
import { randomPassword } from "./subscriptions.ts";

/**
 * Customers from a spreadsheet (CSV), for an ISP moving to Tandao: one row per subscriber with
 * plan, phone, account number, the end of the current period, router, PPPoE username and opening
 * balance. `analyseCustomerImport` is the dry run: it reads the file and reports row by row what an
 * import would do (new, unchanged, or why the row is refused); `importCustomers` re-runs the same
 * analysis in one transaction and writes the new rows, skipping the refused ones. Rows already in
 * the database with the same data are "unchanged", so importing the same file twice changes
 * nothing; a row that differs from the database is a conflict and is never written over.
 *
 * Imported subscribers get no welcome message. Their opening balance, written under the money lock,
 * is a credit entry or, for a debt, an open invoice (see importCustomers), so the ledger sum is the
 * file's balance and an export gives it back. The invoice job bills the period after `expires` as
 * for everyone else. Active subscribers get an `ensure_account` provisioning row.
 */

export { customersInImportForm, type ExistingCustomer } from "./import/analyse.ts";
export * from "./import/format.ts";

// ---------------------------------------------------------------------------------------------
// Use-cases

/** The dry run: what importing `input` would do, row by row. Writes nothing. */
export async function analyseCustomerImport(
  ctx: BillingContext,
  input: string | Uint8Array,
  options: ImportOptions = {},
): Promise<ImportReport> {
  return (await analyse(ctx.db, ctx.settings, input, options)).report;
}

const CHUNK = 1_000;

function chunks<T>(items: T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Imports the file in one transaction: the analysis is run again inside it (imports queue on an
 * advisory lock), and the rows it finds new are written; refused rows are skipped and reported.
 * A file-level error imports nothing.
 */
export async function importCustomers(
  ctx: BillingContext,
  actor: Actor,
  input: string | Uint8Array,
  options: ImportOptions = {},
): Promise<ImportReport> {
  return ctx.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('tandao:customer-import'))`);
    const { report, toCreate } = await analyse(tx, ctx.settings, input, options);
    if (report.fileError) return report;
    const now = ctx.clock.now();

    // Written set-based: one statement per chunk with its rows as one JSON parameter (a hundred
    // thousand rows in seconds, where a statement per row would take minutes).
    const ids = new Map<string, number>();
    for (const part of chunks(toCreate, 10_000)) {
      const inserted = await queryRows<{ id: number; account: string }>(
        tx,
        sql`insert into customers (account_number, phone, name)
            select x.account, x.phone, x.name
            from jsonb_to_recordset(${JSON.stringify(part.map((r) => ({ account: r.account, phone: r.phone, name: r.name })))}::jsonb)
              as x(account text, phone text, name text)
            returning id, account_number as account`,
      );
      for (const c of inserted) ids.set(c.account.toUpperCase(), Number(c.id));
    }
    const customerId = (r: NewRow) => ids.get(r.account.toUpperCase())!;
    const money = await lockCustomerMoney(tx, ids.values());

    const box = requireBox();
    const subscriptionIds = new Map<number, number>();
    for (const part of chunks(toCreate, 10_000)) {
      const values = part.map((r) => ({
        customer_id: customerId(r),
        plan_id: r.planId,
        router_id: r.routerId,
        username: r.username,
        // Sealed as the schema's column type seals it (db/sealed.ts).
        password: box.seal(randomPassword()),
        status: r.status,
        suspended_reason: r.status === "suspended" ? (r.balanceCents < 0 ? "dunning" : "admin") : null,
        start: r.periodStart.toISOString(),
        end: r.periodEnd.toISOString(),
      }));
      // Counted from the period end, one period back (period -1): later periods keep the day of `expires`.
      const inserted = await queryRows<{ id: number; customer_id: number }>(
        tx,
        sql`insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password,
              status, suspended_reason, current_period_start, current_period_end, billing_anchor, period_index)
            select x.customer_id, x.plan_id, x.router_id, x.username, x.password, x.status, x.suspended_reason,
              x.start, x."end", x."end", -1
            from jsonb_to_recordset(${JSON.stringify(values)}::jsonb) as x(customer_id int, plan_id int,
              router_id int, username text, password text, status text, suspended_reason text,
              start timestamptz, "end" timestamptz)
            returning id, customer_id`,
      );
      for (const s of inserted) subscriptionIds.set(Number(s.customer_id), Number(s.id));
    }

    // Opening balances, under the lock taken above, one statement per chunk (rows as one JSON
    // parameter). A credit is a ledger entry. A debt is an open invoice with its ledger entry, so
    // that it is collected like any other: dunning reminds and suspends, a payment settles it, and
    // service waiting on it (pending, suspended) comes back once it is paid. A suspended debtor's
    // debt is the invoice of the period after `expires` (as if dunning had suspended them for it),
    // anyone else's is a manual invoice due now.
    const credits = toCreate.filter((r) => r.balanceCents > 0);
    for (const part of chunks(credits, 10_000)) {
      const entries = part.map((r) => {
        const id = customerId(r);
        assertCovers(money, id);
        return { customer_id: id, amount_cents: r.balanceCents };
      });
      await tx.execute(
        sql`insert into ledger_entries (customer_id, kind, amount_cents, memo, created_at)
            select x.customer_id, 'credit', x.amount_cents, 'opening balance (import)', ${ts(now)}
            from jsonb_to_recordset(${JSON.stringify(entries)}::jsonb) as x(customer_id int, amount_cents bigint)`,
      );
    }
    const debts = toCreate.filter((r) => r.balanceCents < 0);
    await issueInvoices(
      tx,
      now,
      debts.map((r) => {
        const id = customerId(r);
        assertCovers(money, id);
        const recurring = r.status === "suspended";
        return {
          customer_id: id,
          subscription_id: subscriptionIds.get(id)!,
          kind: recurring ? "recurring" : "manual",
          period_start: recurring ? r.periodEnd.toISOString() : null,
          period_end: recurring ? r.nextPeriodEnd.toISOString() : null,
          amount_cents: -r.balanceCents,
          due_at: recurring ? r.periodEnd.toISOString() : now.toISOString(),
          line: "Opening balance (import)",
          memo: "opening balance (import)",
        };
      }),
    );

    // A pending subscriber pays at least the plan's price before the first period starts, as one
    // who signs up does: what the file says they owe already, plus the rest as the first period's
    // invoice (its period the subscription's, which is what activation looks for). A credit goes
    // towards it at their first payment. The file's balance leaves this invoice out, as the export
    // does (customersInImportForm), so the same file imports again as unchanged.
    const prices = new Map(
      (
        await queryRows<{ id: number; price_cents: number | string; name: string }>(
          tx,
          sql`select id, price_cents, name from plans`,
        )
      ).map((p) => [Number(p.id), { priceCents: Number(p.price_cents), name: p.name }]),
    );
    await issueInvoices(
      tx,
      now,
      toCreate.flatMap((r) => {
        if (r.status !== "pending") return [];
        const plan = prices.get(r.planId)!;
        const amount = plan.priceCents - Math.max(0, -r.balanceCents);
        if (amount <= 0) return [];
        const id = customerId(r);
        assertCovers(money, id);
        const memo = `${plan.name}, first period`;
        return [
          {
            customer_id: id,
            subscription_id: subscriptionIds.get(id)!,
            kind: "recurring",
            period_start: r.periodStart.toISOString(),
            period_end: r.periodEnd.toISOString(),
            amount_cents: amount,
            due_at: now.toISOString(),
            line: memo,
            memo,
          },
        ];
      }),
    );

    // Router accounts for active subscribers: the outbox rows enqueueProvisioning writes, in bulk.
    const active = toCreate
      .filter((r) => r.status === "active")
      .map((r) => ({ router_id: r.routerId, subscription_id: subscriptionIds.get(customerId(r))! }));
    for (const part of chunks(active, 10_000)) {
      await tx.execute(
        sql`insert into provisioning_outbox (router_id, subscription_id, action, payload, next_attempt_at, created_at)
            select x.router_id, x.subscription_id, 'ensure_account', '{}'::jsonb, ${ts(now)}, ${ts(now)}
            from jsonb_to_recordset(${JSON.stringify(part)}::jsonb) as x(router_id int, subscription_id int)`,
      );
    }

    const digest = createHash("sha256")
      .update(typeof input === "string" ? input : Buffer.from(input))
      .digest("hex")
      .slice(0, 16);
    await audit(tx, actor, now, {
      action: "customers.imported",
      entity: "import",
      entityId: digest,
      details: {
        file: options.fileName ?? null,
        ...report.counts,
        refusedLines: report.rows
          .filter((r) => r.outcome === "refused")
          .map((r) => r.line)
          .slice(0, 1000),
      },
    });
    return { ...report, committed: true };
  });
}

interface InvoiceToIssue {
  customer_id: number;
  subscription_id: number;
  kind: "recurring" | "manual";
  period_start: string | null;
  period_end: string | null;
  amount_cents: number;
  due_at: string;
  /** The invoice's one line. */
  line: string;
  /** Its ledger entry's memo. */
  memo: string;
}

/**
 * Open invoices, each with its line and its ledger entry, one statement per chunk (rows as one JSON
 * parameter). At most one per subscription in a call: lines and entries find their row by it.
 */
async function issueInvoices(tx: Executor, now: Date, invoices: InvoiceToIssue[]): Promise<void> {
  for (const part of chunks(invoices, 10_000)) {
    await tx.execute(
      sql`with x as (
            select * from jsonb_to_recordset(${JSON.stringify(part)}::jsonb) as x(customer_id int,
              subscription_id int, kind text, period_start timestamptz, period_end timestamptz,
              amount_cents bigint, due_at timestamptz, line text, memo text)
          ),
          issued as (
            insert into invoices (customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, issued_at)
            select customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, ${ts(now)}
            from x
            returning id, customer_id, subscription_id, amount_cents
          ),
          lines as (
            insert into invoice_lines (invoice_id, description, amount_cents)
            select i.id, x.line, i.amount_cents from issued i join x on x.subscription_id = i.subscription_id
          )
          insert into ledger_entries (customer_id, kind, amount_cents, invoice_id, memo, created_at)
          select i.customer_id, 'invoice', -i.amount_cents, i.id, x.memo, ${ts(now)}
          from issued i join x on x.subscription_id = i.subscription_id`,
    );
  }
}
