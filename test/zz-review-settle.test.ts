import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adjustBalance } from "../src/billing/adjust.ts";
import { suspendOverdue, sendReminders } from "../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../src/billing/invoicing.ts";
import { applyPayment } from "../src/billing/payments.ts";
import { DAY, FakeClock } from "../src/clock.ts";
import { type Database, queryRows } from "../src/db/client.ts";
import { invoices, subscriptions } from "../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan, job } from "./support/billing.ts";
import { createTestDatabase } from "./support/db.ts";

let database: Database;
beforeAll(async () => { database = await createTestDatabase(); });
afterAll(async () => { await database.close(); });

describe("review", () => {
  it.skip("a manual /adjust charge unpays the next period and leads to suspension", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-03-01T06:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id);
    // prepay next period
    await applyPayment(ctx, admin, { customerId: customer.id, method: "cash", provider: "cash", providerRef: `pre-${customer.id}`, amountCents: 100_000 });
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    const show = async (l: string) => console.log(l, (await database.db.select().from(invoices).where(eq(invoices.customerId, customer.id)).orderBy(invoices.id)).map((i) => `${i.id} ${i.kind} ${i.amountCents} ${i.paidCents} ${i.status} due=${i.dueAt.toISOString()} paidAt=${i.paidAt?.toISOString()}`));
    await show("before charge");
    await adjustBalance(ctx, admin, { customerId: customer.id, amountCents: -5_000, reason: "router replaced" });
    await show("after charge");
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 60_000));
    console.log("run", await issueRecurringInvoices(ctx, job));
    console.log("reminders", await sendReminders(ctx, job));
    clock.advance(2 * DAY);
    console.log("run2", await issueRecurringInvoices(ctx, job));
    console.log("suspend", await suspendOverdue(ctx, job));
    const [s] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    console.log("sub", s!.status, s!.suspendedReason, s!.currentPeriodEnd.toISOString());
  });

  it("plan of the one-customer settle", async () => {
    await database.db.execute(sql`insert into customers (name, phone, account_number)
      select 'x' || g, '+2549' || lpad(g::text, 8, '0'), 'ACC' || g from generate_series(1, 20000) g`);
    await database.db.execute(sql`insert into invoices (customer_id, kind, amount_cents, paid_cents, status, due_at, issued_at, paid_at)
      select c.id, 'manual', 100, 100, 'paid', now() - (m || ' months')::interval, now() - (m || ' months')::interval, now()
      from customers c, generate_series(1, 12) m`);
    await database.db.execute(sql`insert into invoices (customer_id, kind, amount_cents, paid_cents, status, due_at, issued_at)
      select c.id, 'manual', 100, 0, 'open', now() + interval '2 days', now() from customers c where c.id % 5 = 0`);
    await database.db.execute(sql`insert into invoices (customer_id, kind, amount_cents, paid_cents, status, due_at, issued_at, paid_at)
      select c.id, 'manual', 100, 100, 'paid', now() + interval '2 days', now(), now() from customers c where c.id % 5 = 1`);
    await database.db.execute(sql`analyze invoices`);
    const q = (filter: ReturnType<typeof sql>, targets: ReturnType<typeof sql>) => sql`explain
      with targets as (select distinct c.id as customer_id from (${targets}) as c(id))
      select i.id, i.customer_id, i.amount_cents, i.paid_cents,
        coalesce(sum(i.amount_cents) over (partition by i.customer_id order by i.due_at, i.id rows between unbounded preceding and 1 preceding), 0) as before
      from invoices i join targets t on t.customer_id = i.customer_id
      where ${filter}`;
    const show = async (label: string, query: ReturnType<typeof sql>) => {
      const rows = await queryRows<Record<string, string>>(database.db, query);
      console.log(label + "\n" + rows.map((r) => Object.values(r)[0]).join("\n"));
    };
    const one = sql`select 4006::int`;
    const many = sql`select id from customers where id % 50 = 0`;
    const NEW = sql`i.status = 'open' or (i.status = 'paid' and i.due_at > now())`;
    const OLD = sql`i.status = 'open'`;
    await show("OLD one", q(OLD, one));
    await show("NEW one", q(NEW, one));
    await show("OLD many", q(OLD, many));
    await show("NEW many", q(NEW, many));
    await database.db.execute(sql`create index zz_paid on invoices (customer_id, due_at) where status = 'paid'`);
    await database.db.execute(sql`analyze invoices`);
    await show("NEW one + paid idx", q(NEW, one));
    await show("NEW many + paid idx", q(NEW, many));
  }, 120_000);
});
