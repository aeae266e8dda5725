import { randomBytes } from "node:crypto";
import { and, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { Actor, BillingContext } from "../../src/billing/context.ts";
import {
  defaultPaymentLimits,
  type PaymentLimits,
  type RequestPaymentResult,
  requestPayment,
} from "../../src/billing/intents/request.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { queryRows } from "../../src/db/client.ts";
import { auditLog, paymentIntents } from "../../src/db/schema/index.ts";
import { useSealingKey } from "../../src/db/sealed.ts";
import { createSecretBox } from "../../src/lib/secret-box.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { createUssdRoutes } from "../../src/ussd/routes.ts";
import { admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { silent } from "./harness.ts";
import { serveApp } from "./inbox-support.ts";

/**
 * The abuse limits beyond one phone and one session: a total per minute (a stranger cannot prompt
 * fifty phones in a second), a per-account limit (many phones cannot all prompt for one account) and
 * a per-source limit (one place, e.g. a hotspot's address, cannot prompt without end).
 * What they refuse is refused as `rate_limited` and audited as `payment_intent.refused`.
 */

let database: TestDatabase;
let ctx: BillingContext;
let clock: FakeClock;
let voucherPlanId: number;
let phoneBase = 0;

beforeAll(async () => {
  // PPPoE passwords are sealed at rest with the process key (main.ts registers SECRET_KEY).
  useSealingKey(createSecretBox(randomBytes(32)));
  database = await createTestDatabase({ maxConnections: 10 });
  clock = new FakeClock("2026-06-01T09:00:00Z");
  ctx = billingContext(database.db, clock).ctx;
  voucherPlanId = (
    await createPlan(database.db, {
      name: "Day pass",
      kind: "hotspot",
      priceCents: 50_00,
      periodUnit: "days",
    })
  ).id;
});
afterAll(async () => {
  await database?.close();
});

/** `n` Safaricom numbers no other test here used. */
function phones(n: number): string[] {
  const start = phoneBase;
  phoneBase += n;
  return Array.from({ length: n }, (_, i) => `+25471${String(1_000_000 + start + i).padStart(7, "0")}`);
}

async function refusalsAudited(entityIds: string[]) {
  if (entityIds.length === 0) return [];
  return database.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.action, "payment_intent.refused"), inArray(auditLog.entityId, entityIds)));
}

async function intentsFor(numbers: string[]) {
  return database.db.select().from(paymentIntents).where(inArray(paymentIntents.phone, numbers));
}

const walkIn = (phone: string): Actor => ({ kind: "subscriber", id: phone, channel: "ussd" });

/** A day-pass voucher prompt from `phone`: asked in a menu session, or by the portal under a key. */
const voucherPrompt = (phone: string, asked: { session: string } | { key: string }, limits: PaymentLimits) =>
  requestPayment(
    ctx,
    walkIn(phone),
    {
      phone,
      purpose: "voucher",
      amountCents: 50_00,
      planId: voucherPlanId,
      ...("key" in asked
        ? { channel: "portal", idempotencyKey: asked.key }
        : { channel: "ussd", channelSessionId: asked.session }),
    },
    limits,
  );

describe("prompts per source", () => {
  const limits: PaymentLimits = { ...defaultPaymentLimits, perSource: 8 };
  const fromSource = (phone: string, sourceId: string) =>
    requestPayment(
      ctx,
      walkIn(phone),
      { phone, purpose: "voucher", amountCents: 50_00, planId: voucherPlanId, channel: "portal", sourceId },
      limits,
    );

  it("20 phones at once from one source: exactly the limit go through, the rest are refused and audited", async () => {
    clock.advance(10 * MINUTE);
    const numbers = phones(21);
    const results = await Promise.all(numbers.slice(0, 20).map((phone) => fromSource(phone, "site-a")));
    const refused = results.filter((r): r is Extract<RequestPaymentResult, { ok: false }> => !r.ok);
    expect(results.filter((r) => r.ok)).toHaveLength(8);
    expect(refused).toHaveLength(12);
    for (const r of refused)
      expect(r.message).toBe(
        "Too many payment prompts from this connection: at most 8 in 5 minutes. Please wait and try again.",
      );
    expect(await intentsFor(numbers)).toHaveLength(8);
    const audited = await refusalsAudited(numbers);
    expect(audited).toHaveLength(12);
    for (const row of audited)
      expect(row).toMatchObject({ reason: "rate_limited", details: { limit: "source" } });
    // Another source is not held up by it.
    expect((await fromSource(numbers[20]!, "site-b")).ok).toBe(true);
  });
});

describe("total prompts per minute", () => {
  const limits: PaymentLimits = { ...defaultPaymentLimits, totalPerMinute: 20 };

  it("50 prompts to 50 phones at once: exactly the limit go through, the rest are refused and audited", async () => {
    clock.advance(10 * MINUTE);
    const numbers = phones(50);
    const results = await Promise.all(
      numbers.map((phone, i) => voucherPrompt(phone, { session: `burst-${i}` }, limits)),
    );
    const granted = results.filter((r): r is Extract<RequestPaymentResult, { ok: true }> => r.ok);
    const refused = results.filter((r): r is Extract<RequestPaymentResult, { ok: false }> => !r.ok);
    expect(granted).toHaveLength(20);
    expect(refused).toHaveLength(30);
    // Refused by the total, whether it was full when read or filled by a prompt running beside it.
    for (const r of refused) {
      expect(r.reason).toBe("rate_limited");
      expect(r.message).toMatch(/many payment requests right now/);
    }

    const intents = await intentsFor(numbers);
    expect(intents).toHaveLength(20);
    expect(new Set(intents.map((i) => i.id))).toEqual(new Set(granted.map((g) => g.intentId)));

    // Every refusal is audited, against the phone that was refused; no phone both got and was refused.
    const audited = await refusalsAudited(numbers);
    expect(audited).toHaveLength(30);
    for (const row of audited)
      expect(row).toMatchObject({ reason: "rate_limited", entity: "phone", details: { limit: "total" } });
    const prompted = new Set(intents.map((i) => i.phone));
    for (const row of audited) expect(prompted.has(row.entityId)).toBe(false);

    // Still full within the minute; a minute later there is room again.
    const [late] = phones(1);
    const again = (phone: string, session: string) => voucherPrompt(phone, { session }, limits);
    clock.advance(59_000);
    expect(await again(late!, "burst-late-1")).toMatchObject({ ok: false, reason: "rate_limited" });
    clock.advance(2_000);
    expect((await again(late!, "burst-late-2")).ok).toBe(true);
  });

  it("a refused prompt's repeat (the same key) is refused and audited by the same window", async () => {
    clock.advance(10 * MINUTE);
    const oneAMinute: PaymentLimits = { ...defaultPaymentLimits, totalPerMinute: 1 };
    const [first, second] = phones(2);
    const voucher = (phone: string, key: string) => voucherPrompt(phone, { key }, oneAMinute);
    expect((await voucher(first!, "portal:first")).ok).toBe(true);
    const busy = /many payment requests right now/;
    expect(await voucher(second!, "portal:second")).toMatchObject({ ok: false, message: busy });
    // The form sent twice: the key's first request was refused, so is this one, for the same reason.
    expect(await voucher(second!, "portal:second")).toMatchObject({ ok: false, message: busy });
    const audited = await refusalsAudited([second!]);
    expect(audited).toHaveLength(2);
    for (const row of audited)
      expect(row.details).toMatchObject({ limit: "total", idempotencyKey: "portal:second" });
  });

  it("through the USSD route: 50 strangers buying a voucher at once are cut at the limit", async () => {
    clock.advance(10 * MINUTE);
    const app = createApp({
      db: database.db,
      logger: silent,
      ussdRoutes: createUssdRoutes({
        db: database.db,
        services: createMenuServices(ctx, {
          planCacheMs: 0,
          requestPayment: (actor, input) => requestPayment(ctx, actor, input, limits),
        }),
        settings: {
          isp: "Kibera Net",
          support: "0700 123 456",
          timezone: "Africa/Nairobi",
          minPayCents: 1_000,
          maxPayCents: 150_000_00,
        },
        logger: silent,
      }),
    });
    const server = await serveApp(app);
    try {
      const numbers = phones(50);
      const answers = await Promise.all(
        numbers.map(async (phone, i) => {
          const response = await fetch(`${server.baseUrl}/ussd`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({
              sessionId: `ussd-burst-${process.pid}-${i}`,
              serviceCode: "*384*1#",
              phoneNumber: phone,
              text: "1*1*1",
            }),
          });
          return response.text();
        }),
      );
      const prompted = answers.filter((a) => a.startsWith("END Enter your M-Pesa PIN"));
      const tooMany = answers.filter((a) => a.startsWith("END Too many payment requests"));
      expect(prompted).toHaveLength(20);
      expect(tooMany).toHaveLength(30);
      expect(await intentsFor(numbers)).toHaveLength(20);
      expect(await refusalsAudited(numbers)).toHaveLength(30);
    } finally {
      await server.close();
    }
  });
});

describe("a refusal takes no slot", () => {
  it("a phone turned away by the total limit has its own prompts left once there is room again", async () => {
    clock.advance(10 * MINUTE);
    const limits: PaymentLimits = { ...defaultPaymentLimits, totalPerMinute: 1 };
    const [first, turnedAway] = phones(2);
    const ask = (phone: string, session: string) => voucherPrompt(phone, { session }, limits);
    expect((await ask(first!, "room-1")).ok).toBe(true);
    // Three tries while the minute is full: refused, and no prompt went out for them.
    for (const session of ["room-2", "room-3", "room-4"])
      expect(await ask(turnedAway!, session)).toMatchObject({ ok: false, reason: "rate_limited" });
    expect(await intentsFor([turnedAway!])).toHaveLength(0);
    // A minute later the total has room; this phone has had no prompt at all, so it gets one.
    clock.advance(61_000);
    expect((await ask(turnedAway!, "room-5")).ok).toBe(true);
  });
});

describe("prompts per account", () => {
  async function owingAccount() {
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const [phone] = phones(1);
    const created = await createCustomerWithSubscription(ctx, admin, {
      name: "Otieno Ouma",
      phone: phone!,
      planId: plan.id,
    });
    return created.customer;
  }

  /** A balance prompt for an account (its id) or for a subscription alone, in a session or none. */
  const payFor = (
    account: number | { subscriptionId: number },
    phone: string,
    session: string | null,
    limits: PaymentLimits,
  ) =>
    requestPayment(
      ctx,
      walkIn(phone),
      {
        phone,
        purpose: "balance",
        amountCents: 1_500_00,
        ...(typeof account === "number" ? { customerId: account } : account),
        channel: "ussd",
        ...(session !== null ? { channelSessionId: session } : {}),
      },
      limits,
    );

  it("prompts from different phones for one account are cut at perAccount, refusals audited", async () => {
    clock.advance(10 * MINUTE);
    const limits: PaymentLimits = { ...defaultPaymentLimits, perAccount: 5 };
    const account = await owingAccount();
    const numbers = phones(8);
    const results: RequestPaymentResult[] = [];
    for (const [i, phone] of numbers.entries())
      results.push(await payFor(account.id, phone, `acct-${i}`, limits));
    expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true, false, false, false]);
    for (const r of results.slice(5)) expect(r).toMatchObject({ ok: false, reason: "rate_limited" });

    const audited = await refusalsAudited(numbers.slice(5));
    expect(audited).toHaveLength(3);
    for (const row of audited)
      expect(row.details).toMatchObject({
        customerId: account.id,
        purpose: "balance",
        channel: "ussd",
        limit: "account",
      });
    expect(await intentsFor(numbers)).toHaveLength(5);

    // Another account is not held up by this one; this one has room again after the window.
    const other = await owingAccount();
    expect((await payFor(other.id, phones(1)[0]!, "acct-other", limits)).ok).toBe(true);
    clock.advance(limits.windowMs + 1000);
    expect((await payFor(account.id, phones(1)[0]!, "acct-later", limits)).ok).toBe(true);
  });

  it("a prompt for a subscription alone is counted, and refused, against its account", async () => {
    clock.advance(10 * MINUTE);
    const limits: PaymentLimits = { ...defaultPaymentLimits, perAccount: 1 };
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const [owner, other] = phones(2);
    const { customer, subscription } = await createCustomerWithSubscription(ctx, admin, {
      name: "Wanjiru Kamau",
      phone: owner!,
      planId: plan.id,
    });
    const bySubscription = (phone: string) =>
      payFor({ subscriptionId: subscription.id }, phone, null, limits);
    expect((await bySubscription(owner!)).ok).toBe(true);
    expect(await bySubscription(other!)).toMatchObject({ ok: false, message: /for this account/ });
    const [refusal] = await refusalsAudited([other!]);
    expect(refusal?.details).toMatchObject({ customerId: customer.id, limit: "account" });
  });

  it("simultaneous prompts from many phones for one account: exactly perAccount go through", async () => {
    clock.advance(10 * MINUTE);
    const limits: PaymentLimits = { ...defaultPaymentLimits, perAccount: 5 };
    const account = await owingAccount();
    const numbers = phones(12);
    const results = await Promise.all(
      numbers.map((phone, i) => payFor(account.id, phone, `acct-race-${i}`, limits)),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    expect(await refusalsAudited(numbers)).toHaveLength(7);
  });

  it("a prompt refused for its account takes no slot of the total", async () => {
    clock.advance(10 * MINUTE);
    const limits: PaymentLimits = { ...defaultPaymentLimits, perAccount: 2, totalPerMinute: 4 };
    const flooded = await owingAccount();
    const numbers = phones(6);
    const results = [];
    for (const [i, phone] of numbers.entries())
      results.push(await payFor(flooded.id, phone, `flood-${i}`, limits));
    expect(results.filter((r) => r.ok)).toHaveLength(2);
    // Two of the four total slots are used: two prompts for other accounts still go through.
    for (const tag of ["a", "b"]) {
      const other = await owingAccount();
      expect((await payFor(other.id, phones(1)[0]!, `flood-other-${tag}`, limits)).ok).toBe(true);
    }
    const last = await owingAccount();
    expect(await payFor(last.id, phones(1)[0]!, "flood-over", limits)).toMatchObject({
      ok: false,
      reason: "rate_limited",
    });
    const [window] = await queryRows<{ n: number }>(
      database.db,
      sql`select cardinality(hits) as n from rate_limit_windows where key = 'stk-total'`,
    );
    expect(Number(window?.n)).toBe(4);
  });
});

describe("prompts to a number paying for someone else", () => {
  const onBehalf = (customerId: number, asker: string, payer: string, session: string) =>
    requestPayment(ctx, walkIn(asker), {
      phone: payer,
      purpose: "balance",
      amountCents: 1_000_00,
      customerId,
      channel: "ussd",
      channelSessionId: session,
      onBehalf: true,
    });

  it("are few per number and per account, and never use up the number's own room to pay", async () => {
    clock.advance(10 * MINUTE);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const [mine, victimsOwn, other] = phones(3);
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Prompts Others",
      phone: mine!,
      planId: plan.id,
    });
    const victim = await createCustomerWithSubscription(ctx, admin, {
      name: "Prompted",
      phone: victimsOwn!,
      planId: plan.id,
    });

    // One number: three prompts on someone's behalf in a day, then refused.
    const toVictim = [];
    for (let i = 0; i < 4; i++) toVictim.push(await onBehalf(customer.id, mine!, victimsOwn!, `behalf-${i}`));
    expect(toVictim.map((r) => r.ok)).toEqual([true, true, true, false]);
    expect(toVictim[3]).toMatchObject({ reason: "rate_limited", message: /other numbers/ });
    // The prompted customer can still pay their own account from their own phone.
    const own = await requestPayment(ctx, walkIn(victimsOwn!), {
      phone: victimsOwn!,
      purpose: "balance",
      amountCents: 1_000_00,
      customerId: victim.customer.id,
      channel: "ussd",
      channelSessionId: "victim-own",
    });
    expect(own.ok).toBe(true);
    // One account: three on its behalf in a day, whichever numbers.
    expect(await onBehalf(customer.id, mine!, other!, "behalf-other")).toMatchObject({
      ok: false,
      reason: "rate_limited",
    });
    clock.advance(24 * 60 * MINUTE);
    expect((await onBehalf(customer.id, mine!, other!, "behalf-next-day")).ok).toBe(true);
  });
});
