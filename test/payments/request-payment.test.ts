import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BillingContext, defaultBillingSettings } from "../../src/billing/context.ts";
import { normalizeKenyanPhone, requestPayment } from "../../src/billing/intents/request.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { auditLog, customers, paymentIntents, plans, rateLimitWindows } from "../../src/db/schema/index.ts";
import { createTestDatabase, onRealPostgres } from "../support/db.ts";

const actor = { kind: "subscriber" as const, id: "+254712000001", channel: "ussd" };

describe("requestPayment", () => {
  let database: Database;
  let ctx: BillingContext;
  let clock: FakeClock;
  let customerId: number;
  let planId: number;
  beforeAll(async () => {
    database = await createTestDatabase();
    clock = new FakeClock("2026-03-01T08:00:00Z");
    ctx = { db: database.db, clock, settings: defaultBillingSettings };
    const [c] = await database.db
      .insert(customers)
      .values({ accountNumber: "ACC1", phone: "+254712000001", name: "Amina" })
      .returning();
    customerId = c!.id;
    const [p] = await database.db
      .insert(plans)
      .values({
        code: "day",
        name: "Day pass",
        kind: "hotspot",
        priceCents: 20_00,
        periodUnit: "days",
        rateLimit: "2M/2M",
      })
      .returning();
    planId = p!.id;
  });
  afterAll(async () => {
    await database.close();
  });

  it("records a pending intent in whole shillings, with no checkout id yet", async () => {
    const result = await requestPayment(ctx, actor, {
      phone: "0712 000 001",
      purpose: "balance",
      amountCents: 1040,
      customerId,
      channel: "ussd",
      channelSessionId: "s-record",
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const [row] = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.id, result.intentId));
    expect(row).toMatchObject({
      status: "pending",
      phone: "+254712000001",
      amountCents: 1100,
      checkoutRequestId: null,
      customerId,
    });
  });

  it("refuses the 4th prompt for one phone within 5 minutes, and allows it after", async () => {
    clock.advance(10 * MINUTE);
    const ask = (session: string) =>
      requestPayment(ctx, actor, {
        phone: "+254722000002",
        purpose: "balance",
        amountCents: 50_00,
        customerId,
        channel: "ussd",
        channelSessionId: session,
      });
    for (let i = 0; i < 3; i++) expect((await ask(`p${i}`)).ok).toBe(true);
    const fourth = await ask("p3");
    expect(fourth).toMatchObject({ ok: false, reason: "rate_limited" });
    if (!fourth.ok) expect(fourth.message).toMatch(/at most 3 in 5 minutes/);
    clock.advance(5 * MINUTE + 1000);
    expect((await ask("p4")).ok).toBe(true);
  });

  it("limits one channel session across different phones", async () => {
    clock.advance(10 * MINUTE);
    const phones = ["+254733000001", "+254733000002", "+254733000003", "+254733000004"];
    const results = [];
    for (const phone of phones)
      results.push(
        await requestPayment(ctx, actor, {
          phone,
          purpose: "voucher",
          amountCents: 20_00,
          planId,
          channel: "whatsapp",
          channelSessionId: "wa-1",
        }),
      );
    expect(results.map((r) => r.ok)).toEqual([true, true, true, false]);
  });

  it("records a repeated key once, answers it with the first intent and takes no prompt slot for it", async () => {
    clock.advance(10 * MINUTE);
    const ask = (idempotencyKey: string) =>
      requestPayment(ctx, actor, {
        phone: "+254766000001",
        purpose: "balance",
        amountCents: 30_00,
        customerId,
        channel: "ussd",
        channelSessionId: `s-${idempotencyKey}`,
        idempotencyKey,
      });
    const first = await ask("ussd:k1#2");
    const again = await ask("ussd:k1#2");
    const third = await ask("ussd:k1#2");
    expect(first.ok && again.ok && third.ok).toBe(true);
    if (!first.ok || !again.ok || !third.ok) return;
    expect(again.intentId).toBe(first.intentId);
    expect(third.intentId).toBe(first.intentId);
    const rows = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.phone, "+254766000001"));
    expect(rows).toHaveLength(1);
    const audits = await database.db
      .select()
      .from(auditLog)
      .where(
        and(eq(auditLog.action, "payment_intent.requested"), eq(auditLog.entityId, String(first.intentId))),
      );
    expect(audits).toHaveLength(1);
    // Three prompts per phone in the window: the repeats used none, so two new requests still pass.
    expect((await ask("ussd:k2#2")).ok).toBe(true);
    expect((await ask("ussd:k3#2")).ok).toBe(true);
    expect(await ask("ussd:k4#2")).toMatchObject({ ok: false, reason: "rate_limited" });
    // A refused request's key is spent: its repeat is refused the same way.
    expect(await ask("ussd:k4#2")).toMatchObject({ ok: false, reason: "rate_limited" });
    // Each refusal is audited once, naming the full window: the first by the statement that refused
    // it, the repeat (which that statement cannot tell from a valid request) afterwards.
    const refusals = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "payment_intent.refused"), eq(auditLog.entityId, "+254766000001")));
    expect(refusals).toHaveLength(2);
    for (const row of refusals) expect(row.details).toMatchObject({ limit: "phone", purpose: "balance" });
  });

  it("refuses a key that was already used for a different payment", async () => {
    clock.advance(10 * MINUTE);
    const ask = (amountCents: number) =>
      requestPayment(ctx, actor, {
        phone: "+254766000002",
        purpose: "balance",
        amountCents,
        customerId,
        channel: "ussd",
        idempotencyKey: "ussd:reuse#3",
      });
    expect((await ask(40_00)).ok).toBe(true);
    expect(await ask(90_00)).toMatchObject({ ok: false, reason: "invalid" });
    // The same amount from the same phone, for another account: not the payment the key first asked.
    const [other] = await database.db
      .insert(customers)
      .values({ accountNumber: "ACC-REUSE", phone: "+254712000099", name: "Baraka" })
      .returning();
    const forOther = await requestPayment(ctx, actor, {
      phone: "+254766000002",
      purpose: "balance",
      amountCents: 40_00,
      customerId: other!.id,
      channel: "ussd",
      idempotencyKey: "ussd:reuse#3",
    });
    expect(forOther).toMatchObject({ ok: false, reason: "invalid" });
    // The very same request again is the first one's answer.
    expect(await ask(40_00)).toMatchObject({ ok: true });
    const rows = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.phone, "+254766000002"));
    expect(rows.map((r) => r.amountCents)).toEqual([40_00]);
    expect(rows.map((r) => r.customerId)).toEqual([customerId]);
  });

  it("refuses amounts outside the purpose's bounds and incomplete requests", async () => {
    const big = await requestPayment(ctx, actor, {
      phone: "+254744000001",
      purpose: "voucher",
      amountCents: 50_000_00,
      planId,
      channel: "ussd",
    });
    expect(big).toMatchObject({ ok: false, reason: "amount_out_of_range" });
    const noPlan = await requestPayment(ctx, actor, {
      phone: "+254744000001",
      purpose: "voucher",
      amountCents: 50_00,
      channel: "ussd",
    });
    expect(noPlan).toMatchObject({ ok: false, reason: "invalid" });
    const badPhone = await requestPayment(ctx, actor, {
      phone: "12345",
      purpose: "balance",
      amountCents: 50_00,
      customerId,
      channel: "ussd",
    });
    expect(badPhone).toMatchObject({ ok: false, reason: "invalid" });
  });

  it("normalizes the usual ways of writing a Kenyan number", () => {
    expect(normalizeKenyanPhone("0712345678")).toBe("+254712345678");
    expect(normalizeKenyanPhone("254112345678")).toBe("+254112345678");
    expect(normalizeKenyanPhone("+254 712 345 678")).toBe("+254712345678");
    expect(normalizeKenyanPhone("0812345678")).toBeNull();
    expect(normalizeKenyanPhone("+447911123456")).toBeNull();
  });
});

describe.runIf(onRealPostgres())("requestPayment under concurrency", () => {
  let database: Database;
  afterAll(async () => {
    await database?.close();
  });
  it("lets exactly 3 of 10 simultaneous prompts for one phone through", async () => {
    database = await createTestDatabase({ maxConnections: 10 });
    const ctx = { db: database.db, clock: new FakeClock(), settings: defaultBillingSettings };
    const [c] = await database.db
      .insert(customers)
      .values({ accountNumber: "R1", phone: "+254755000001", name: "Race" })
      .returning();
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        requestPayment(ctx, actor, {
          phone: "+254755000001",
          purpose: "balance",
          amountCents: 100_00,
          customerId: c!.id,
          channel: "ussd",
        }),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(3);
  });

  it("records one intent for eight simultaneous copies of one key, and tells each copy its id", async () => {
    const ctx = { db: database.db, clock: new FakeClock(), settings: defaultBillingSettings };
    const [c] = await database.db
      .insert(customers)
      .values({ accountNumber: "R2", phone: "+254755000002", name: "Copies" })
      .returning();
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        requestPayment(ctx, actor, {
          phone: "+254755000002",
          purpose: "balance",
          amountCents: 100_00,
          customerId: c!.id,
          channel: "ussd",
          idempotencyKey: "ussd:copies#1",
        }),
      ),
    );
    const rows = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.phone, "+254755000002"));
    expect(rows).toHaveLength(1);
    expect(results.map((r) => (r.ok ? r.intentId : r.reason))).toEqual(Array(8).fill(rows[0]!.id));
    // The copies took no prompt slot: the phone has its other two prompts of the window left.
    const [window] = await database.db
      .select()
      .from(rateLimitWindows)
      .where(eq(rateLimitWindows.key, "stk-phone:+254755000002"));
    expect(window!.hits).toHaveLength(1);
  });
});
