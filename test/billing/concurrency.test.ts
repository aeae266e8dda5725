import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { billingJobs } from "../../src/billing/jobs.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import { type Database, openDatabase } from "../../src/db/client.ts";
import { runJob } from "../../src/jobs/runner.ts";
import { activeSubscriber, admin, billingContext, count, createPlan, ledgerSum } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";

// Real concurrency needs real connections: on the embedded database everything is serialised.
describe.runIf(onRealPostgres())("concurrent instances on PostgreSQL", () => {
  let a: TestDatabase;
  let b: Database;
  beforeAll(async () => {
    a = await createTestDatabase({ maxConnections: 20 });
    // A second client with its own pool stands for a second instance of the service.
    b = await openDatabase({ databaseUrl: a.url, dataDir: "", maxConnections: 20 });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("50 concurrent deliveries of one receipt credit it once", async () => {
    const { ctx } = billingContext(a.db);
    const plan = await createPlan(a.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        applyPayment(billingContext(i % 2 ? a.db : b.db).ctx, admin, {
          customerId: customer.id,
          method: "mpesa_stk",
          provider: "mpesa",
          providerRef: "RACE000001",
          amountCents: 70_000,
        }),
      ),
    );
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(results.map((r) => r.paymentId)).size).toBe(1);
    expect(await ledgerSum(a.db, customer.id)).toBe(70_000);
  });

  it("two instances running the invoice job at once issue each invoice once", async () => {
    const clock = new FakeClock("2026-11-01T00:00:00Z");
    const { ctx } = billingContext(a.db, clock);
    const plan = await createPlan(a.db, { priceCents: 100_000 });
    const subs: { id: number; currentPeriodEnd: Date }[] = [];
    for (let i = 0; i < 20; i++) subs.push((await activeSubscriber(ctx, plan.id, `Race ${i}`)).subscription);
    clock.set(new Date(subs[0]!.currentPeriodEnd.getTime() - DAY));
    const job = billingJobs.find((j) => j.name === "invoicing")!;
    const runs = await Promise.all(
      [a, b, a, b].map((d) => runJob(d.db, clock, "invoicing", (tx) => job.run(tx, { ...ctx, db: d.db }))),
    );
    expect(runs.every((r) => r.status !== "failed")).toBe(true);
    const ids = sql.join(
      subs.map((s) => sql`${s.id}`),
      sql`, `,
    );
    expect(
      await count(
        a.db,
        sql`select count(*)::int as n from invoices where kind = 'recurring' and subscription_id in (${ids}) and issued_at = ${clock.now().toISOString()}::timestamptz`,
      ),
    ).toBe(20);
    expect(
      await count(
        a.db,
        sql`select count(*)::int as n from (select subscription_id, period_start from invoices where kind = 'recurring' group by 1, 2 having count(*) > 1) d`,
      ),
    ).toBe(0);
  });
});
