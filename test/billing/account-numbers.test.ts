import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importCustomers } from "../../src/billing/import.ts";
import { selfSignUp } from "../../src/billing/self-signup.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * New accounts are numbered `TD` and their row id; an import may bring `TD…` numbers of an earlier
 * system (the /export format) whose numbers need not match the ids they get here.
 */
let database: Database;
const clock = new FakeClock("2026-06-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

const td = (n: number) => `TD${String(n).padStart(5, "0")}`;

describe("self sign-up after an import of TD account numbers", () => {
  it("gets an account number that is free", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { code: "home-10", name: "Home 10", priceCents: 250_000 });
    const signUp = (phone: string) =>
      selfSignUp(ctx, job, {
        phone,
        name: "Zawadi Njeri",
        planId: plan.id,
        language: "en",
        area: { name: "Kahawa West", routerId: null },
        channel: "ussd",
        sessionId: phone,
      });
    const first = await signUp(uniquePhone());
    if (!first.ok) throw new Error("first sign-up failed");
    const [row] = await database.db
      .select({ id: customers.id })
      .from(customers)
      .where(eq(customers.accountNumber, first.accountNumber));
    const k = row!.id;
    // One imported customer (it takes id k+1) whose old account number is TD(k+2).
    const csv = [
      "account,name,phone,plan,status,expires,router,username,balance",
      `${td(k + 2)},Imported Person,0712888001,home-10,active,2026-06-30,,,0`,
    ].join("\n");
    const report = await importCustomers(ctx, admin, csv, { servedCountries: ["KE"] });
    expect(report.rows.map((r) => r.outcome)).toEqual(["new"]);

    const second = await signUp(uniquePhone());
    expect(second).toMatchObject({ ok: true, accountNumber: `${td(k + 2)}A` });
  });
});
