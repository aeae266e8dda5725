import { and, eq, like, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { applyPayment, recordPaymentByReference } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { createTelegramSender } from "../../src/bots/telegram/sender.ts";
import { FakeClock } from "../../src/clock.ts";
import {
  adminConfirmations,
  ledgerEntries,
  messageOutbox,
  payments,
  provisioningOutbox,
  routers,
  subscriptions,
} from "../../src/db/schema/index.ts";
import { activeSubscriber, createPlan, job, ledgerSum } from "../support/billing.ts";
import {
  ADMIN_GROUP,
  adminWorldForFile,
  auditRows,
  buttonsOf,
  lastMenuIn,
  lastText,
  lastToast,
  OWNER,
  shownIn,
} from "./world.ts";

const clock = new FakeClock("2026-04-01T06:00:00Z");
const SUPPORT = 6_100_002;
const OTHER_ADMIN = 6_100_003;
const world = adminWorldForFile(clock, [
  { id: SUPPORT, role: "support", name: "Sam" },
  { id: OTHER_ADMIN, role: "admin", name: "Ann" },
]);

async function cashPayments(customerId: number) {
  return world.db
    .select()
    .from(payments)
    .where(and(eq(payments.customerId, customerId), like(payments.providerRef, "tg-%")));
}

describe("looking subscribers up", () => {
  it("/find by name, phone and account; /sub shows the card with buttons", async () => {
    const plan = await createPlan(world.db, { priceCents: 150_000, name: "Fibre 1500" });
    const [router] = await world.db
      .insert(routers)
      .values({ name: "Kibera-1", host: "10.0.0.1", username: "api", passwordEncrypted: "x" })
      .returning();
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Wanjiku Kamau",
      phone: "+254712300001",
      planId: plan.id,
      routerId: router!.id,
    });
    await applyPayment(world.ctx, job, {
      customerId: customer.id,
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: "RDA1B2C3D4",
      amountCents: 150_000,
    });
    await createCustomerWithSubscription(world.ctx, job, {
      name: "Otieno Wanjala",
      phone: "+254712300002",
      planId: plan.id,
    });

    await world.say(SUPPORT, "/find wanjiku");
    const byName = lastText(world.fake, SUPPORT);
    expect(byName).toMatch(/^1 match:/);
    expect(byName).toMatch(new RegExp(`${customer.accountNumber} · Wanjiku Kamau · 0712 300001`));
    expect(byName).toMatch(/active, Fibre 1500, until 1 May 2026, balance KES 0/);

    await world.say(SUPPORT, "/find 0712 300 002");
    expect(lastText(world.fake, SUPPORT)).toMatch(
      /Otieno Wanjala.*\n.*pending, Fibre 1500, balance -KES 1,500 \(owes KES 1,500\)/,
    );
    await world.say(SUPPORT, `/find ${customer.accountNumber.toLowerCase()}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Wanjiku Kamau/);
    await world.say(SUPPORT, "/find Nobody Here");
    expect(lastText(world.fake, SUPPORT)).toBe('Nobody matches "Nobody Here".');

    await world.say(SUPPORT, `/sub ${customer.accountNumber}`);
    const card = lastMenuIn(world.fake, SUPPORT);
    const text = String(card.payload.text);
    expect(text).toMatch(/Plan: Fibre 1500 \(KES 1,500 per month\)/);
    expect(text).toMatch(/Router: Kibera-1/);
    expect(text).toMatch(/Status: active/);
    expect(text).toMatch(/Period: 1 Apr 2026 – 1 May 2026/);
    expect(text).toMatch(/Balance: KES 0/);
    expect(text).toMatch(/KES 1,500 mpesa_stk RDA1B2C3D4/);
    expect(text).toMatch(/Open invoices: none/);
    expect(text).toMatch(/Last provisioning: restore — pending/);
    // Support may resume and record payments but not suspend.
    expect(buttonsOf(card).map((b) => b.text)).toEqual(["Record payment"]);
    await world.say(OWNER, `/sub ${customer.accountNumber}`);
    expect(buttonsOf(lastMenuIn(world.fake, OWNER)).map((b) => b.text)).toEqual([
      "Suspend",
      "Record payment",
    ]);

    await world.press(SUPPORT, "Record payment");
    expect(lastText(world.fake, SUPPORT)).toBe(
      `To record cash for ${customer.accountNumber}, type:\n/pay ${customer.accountNumber} <amount in shillings> [note]`,
    );

    await world.say(SUPPORT, "/sub NOSUCH1");
    expect(lastText(world.fake, SUPPORT)).toBe("No account NOSUCH1. Try /find.");
  });
});

describe("/pay", () => {
  it("asks, and the button credits once: a second tap and another admin's tap do nothing", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Cash Payer",
      phone: "+254712300010",
      planId: plan.id,
    });
    await world.say(SUPPORT, `/pay ${customer.accountNumber} 1,000.50 paid at the shop`);
    const question = lastMenuIn(world.fake, SUPPORT);
    expect(String(question.payload.text)).toMatch(
      /record a cash payment of KES 1,000.50 to .* \(note: paid at the shop\)\?/,
    );
    expect(await cashPayments(customer.id)).toHaveLength(0);

    // Another admin (the owner, even) cannot confirm someone else's question.
    await world.press(OWNER, "Confirm", SUPPORT, question);
    expect(lastToast(world.fake)).toBe("Only the admin who asked can answer this.");
    expect(await cashPayments(customer.id)).toHaveLength(0);

    await world.press(SUPPORT, "Confirm", SUPPORT, question);
    expect(lastToast(world.fake)).toBe("Done.");
    expect(lastText(world.fake, SUPPORT)).toMatch(
      /Recorded KES 1,000.50 cash for .*Balance now KES 0.50\. Service restored\./,
    );
    await world.press(SUPPORT, "Confirm", SUPPORT, question);
    expect(lastToast(world.fake)).toBe("Already done.");

    const cash = await cashPayments(customer.id);
    expect(cash.map((p) => [p.method, p.amountCents])).toEqual([["cash", 100_050]]);
    const credits = await world.db
      .select()
      .from(ledgerEntries)
      .where(and(eq(ledgerEntries.customerId, customer.id), eq(ledgerEntries.kind, "payment")));
    expect(credits.map((c) => c.amountCents)).toEqual([100_050]);
    expect(await ledgerSum(world.db, customer.id)).toBe(50);
    const [subscription] = await world.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.customerId, customer.id));
    expect(subscription!.status).toBe("active");
    const applied = await auditRows(world.db, "payment.applied", `tg:${SUPPORT}`);
    expect(applied.map((r) => [r.actorKind, r.channel, r.entityId])).toEqual([
      ["admin", "telegram_admin", String(cash[0]!.id)],
    ]);
    expect(
      (await auditRows(world.db, "admin.confirmed", `tg:${SUPPORT}`)).map((r) => r.details.note),
    ).toEqual(["paid at the shop"]);
  });

  it("two taps arriving together credit once", async () => {
    const plan = await createPlan(world.db, { priceCents: 50_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Double Tap",
      phone: "+254712300011",
      planId: plan.id,
    });
    await world.say(OWNER, `/pay ${customer.accountNumber} 500`, ADMIN_GROUP);
    const question = lastMenuIn(world.fake, ADMIN_GROUP);
    await Promise.all([
      world.press(OWNER, "Confirm", ADMIN_GROUP, question),
      world.press(OWNER, "Confirm", ADMIN_GROUP, question),
    ]);
    expect((await cashPayments(customer.id)).map((p) => p.amountCents)).toEqual([50_000]);
    const toasts = world.fake
      .callsOf("answerCallbackQuery")
      .slice(-2)
      .map((c) => c.payload.text);
    expect(toasts.filter((t) => t === "Done.")).toHaveLength(1);
    expect(toasts.filter((t) => t !== "Done.")[0]).toMatch(/^Already (done|answered)\.$/);
  });

  it("Cancel ends the question; bad amounts are answered clearly and ask nothing", async () => {
    const plan = await createPlan(world.db, { priceCents: 50_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Bad Args",
      phone: "+254712300012",
      planId: plan.id,
    });
    const acct = customer.accountNumber;
    await world.say(OTHER_ADMIN, `/pay ${acct} 700`);
    await world.press(OTHER_ADMIN, "Cancel");
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/^Cancelled: record a cash payment of KES 700/);
    await world.press(OTHER_ADMIN, "Confirm");
    expect(lastToast(world.fake)).toBe("Already cancelled.");

    const questions = async () => (await world.db.select().from(adminConfirmations)).length;
    const asked = await questions();
    const cases: [string, RegExp][] = [
      ["/pay", /Say the account number/],
      [`/pay ${acct}`, /Say the amount in shillings/],
      [`/pay ${acct} -500`, /more than zero/],
      [`/pay ${acct} 0`, /more than zero/],
      [`/pay ${acct} 10.505`, /more than two decimals/],
      [`/pay ${acct} 12abc`, /"12abc" is not an amount/],
      [`/pay ${acct} 1,00`, /"1,00" is not an amount/],
      [`/pay ${acct} 5000000`, /more than one cash payment can be \(KES 1,000,000\)/],
      [`/pay ${acct} 99999999999999999999`, /more than one cash payment can be/],
      ["/pay NOSUCH9 500", /No account NOSUCH9/],
      ["/pay TD'; 500", /is not an account number/],
    ];
    for (const [typed, answer] of cases) {
      await world.say(OTHER_ADMIN, typed);
      expect(lastText(world.fake, OTHER_ADMIN), typed).toMatch(answer);
    }
    expect(await questions()).toBe(asked);
    expect(await cashPayments(customer.id)).toHaveLength(0);
    expect(await ledgerSum(world.db, customer.id)).toBe(-50_000);
  });

  it("a confirmation too old does nothing", async () => {
    const plan = await createPlan(world.db, { priceCents: 50_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Late Tap",
      phone: "+254712300013",
      planId: plan.id,
    });
    await world.say(OTHER_ADMIN, `/pay ${customer.accountNumber} 500`);
    clock.advance(11 * 60_000);
    await world.press(OTHER_ADMIN, "Confirm");
    expect(lastToast(world.fake)).toBe("Too late: ask again.");
    expect(await cashPayments(customer.id)).toHaveLength(0);
  });
});

describe("/suspend and /resume", () => {
  it("each asks, and the button goes through the billing core: router rows written, audited", async () => {
    const plan = await createPlan(world.db, { priceCents: 80_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Suspend Me");
    const acct = customer.accountNumber;
    const rows = (action: "suspend" | "restore") =>
      world.db
        .select()
        .from(provisioningOutbox)
        .where(
          and(eq(provisioningOutbox.subscriptionId, subscription.id), eq(provisioningOutbox.action, action)),
        );
    const restoresBefore = (await rows("restore")).length;

    // Support may not suspend.
    await world.say(SUPPORT, `/suspend ${acct}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/may not use \/suspend/);

    await world.say(OWNER, `/sub ${acct}`);
    await world.press(OWNER, "Suspend");
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /suspend .*'s service \(reason: suspended from the admin chat\)\?/,
    );
    expect(await rows("suspend")).toHaveLength(0);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(`Suspended ${acct}`);
    await world.press(OWNER, "Confirm");
    expect(lastToast(world.fake)).toBe("Already done.");
    expect(await rows("suspend")).toHaveLength(1);
    let [state] = await world.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect([state!.status, state!.suspendedReason]).toEqual(["suspended", "admin"]);
    expect(
      (await auditRows(world.db, "subscription.suspended", `tg:${OWNER}`)).map((r) => r.entityId),
    ).toContain(String(subscription.id));

    await world.say(OWNER, `/suspend ${acct}`);
    expect(lastText(world.fake, OWNER)).toMatch(/already suspended/);

    // Support may resume, typed with a reason.
    await world.say(SUPPORT, `/resume ${acct} paid in person`);
    await world.press(SUPPORT, "Confirm");
    expect(lastText(world.fake, SUPPORT)).toMatch(`Resumed ${acct}`);
    expect(await rows("restore")).toHaveLength(restoresBefore + 1);
    [state] = await world.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(state!.status).toBe("active");
    const resumed = await auditRows(world.db, "subscription.resumed", `tg:${SUPPORT}`);
    expect(resumed.map((r) => [r.entityId, r.reason])).toEqual([[String(subscription.id), "paid in person"]]);

    await world.say(SUPPORT, `/resume ${acct}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/is not suspended \(it is active\)/);
  });
});

describe("/unmatched and /assign", () => {
  it("lists the queue and credits an assignment once", async () => {
    const plan = await createPlan(world.db, { priceCents: 60_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Paybill Typo",
      phone: "+254712300020",
      planId: plan.id,
    });
    await recordPaymentByReference(
      world.ctx,
      { kind: "webhook", id: "mpesa" },
      {
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: "SBX9TYPO01",
        amountCents: 60_000,
        reference: "TD0O0X",
        payerName: "PAYBILL TYPO",
      },
    );

    await world.say(SUPPORT, "/unmatched");
    expect(lastText(world.fake, SUPPORT)).toMatch(
      /1 unmatched payment:\n {2}• #\d+ SBX9TYPO01 KES 600 .* ref "TD0O0X" from PAYBILL TYPO — no account matches/,
    );
    // Support reads the queue but does not place money.
    await world.say(SUPPORT, `/assign SBX9TYPO01 ${customer.accountNumber}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/may not use \/assign/);

    await world.say(OTHER_ADMIN, "/assign");
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/Say the receipt number and the account/);
    await world.say(OTHER_ADMIN, "/assign NOPE1234 TD00001");
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/No payment with receipt NOPE1234/);
    await world.say(OTHER_ADMIN, "/assign SBX9TYPO01 NOSUCH7");
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/No account NOSUCH7/);
    const [still] = await world.db.select().from(payments).where(eq(payments.providerRef, "SBX9TYPO01"));
    expect(still!.status).toBe("unmatched");

    await world.say(OTHER_ADMIN, `/assign sbx9typo01 ${customer.accountNumber}`);
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(
      /SBX9TYPO01 \(KES 600\) credited to .*Balance now KES 0\. Service restored\./,
    );
    await world.say(OTHER_ADMIN, `/assign SBX9TYPO01 ${customer.accountNumber}`);
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/not waiting to be assigned/);
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
    expect((await auditRows(world.db, "payment.assigned", `tg:${OTHER_ADMIN}`)).length).toBe(1);
    await world.say(SUPPORT, "/unmatched");
    expect(lastText(world.fake, SUPPORT)).toBe("No unmatched payments.");
  });

  it("takes an imported account number with an underscore, as paybill does", async () => {
    const plan = await createPlan(world.db, { priceCents: 60_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Imported Numbering",
      phone: "+254712300029",
      planId: plan.id,
      accountNumber: "KB_001",
    });
    await recordPaymentByReference(
      world.ctx,
      { kind: "webhook", id: "mpesa" },
      {
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: "SBX9UNDER1",
        amountCents: 60_000,
        reference: "KB 0O1",
      },
    );
    await world.say(OTHER_ADMIN, "/assign SBX9UNDER1 kb_001");
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/SBX9UNDER1 \(KES 600\) credited to/);
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
  });

  it("a push held without a receipt is placed by the name the queue shows; money given back leaves the queue", async () => {
    const plan = await createPlan(world.db, { priceCents: 40_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Held Push",
      phone: "+254712300021",
      planId: plan.id,
    });
    // As a status query's "paid" that may be a paybill payment's money is left (src/billing/intents).
    const [held, wrongPaybill] = await world.db
      .insert(payments)
      .values([
        {
          method: "mpesa_stk",
          provider: "mpesa",
          providerRef: "stk:ws_CO_05052026080000123456",
          amountCents: 40_000,
          status: "unmatched",
          holdReason: "paid push (status query); may be the same money as paybill payment SAB1234567",
          receivedAt: clock.now(),
        },
        {
          method: "mpesa_c2b",
          provider: "mpesa",
          providerRef: "SWR0NGPB01",
          amountCents: 25_000,
          accountReference: "not ours",
          status: "unmatched",
          holdReason: "no account matches",
          receivedAt: clock.now(),
        },
      ])
      .returning();
    await world.say(OTHER_ADMIN, `/assign ${held!.providerRef} ${customer.accountNumber}`);
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(
      /stk:ws_CO_05052026080000123456 \(KES 400\) credited to .*Service restored\./,
    );

    await world.say(OTHER_ADMIN, "/refunded SWR0NGPB01");
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/Say why/);
    await world.say(OTHER_ADMIN, `/refunded #${held!.id} wrong`);
    expect(lastText(world.fake, OTHER_ADMIN)).toBe(`#${held!.id} is not waiting to be assigned (applied).`);
    await world.say(OTHER_ADMIN, `/refunded #${wrongPaybill!.id} sent back by M-Pesa reversal`);
    expect(String(lastMenuIn(world.fake, OTHER_ADMIN).payload.text)).toMatch(
      /^Record that SWR0NGPB01 \(KES 250, received .*\) was given back to the payer\? It leaves the queue and is never credited\./,
    );
    await world.press(OTHER_ADMIN, "Confirm");
    expect(lastText(world.fake, OTHER_ADMIN)).toBe(
      "✅ SWR0NGPB01 (KES 250) recorded as refunded; it has left the unmatched queue.",
    );
    const [after] = await world.db.select().from(payments).where(eq(payments.id, wrongPaybill!.id));
    expect(after).toMatchObject({
      status: "refunded",
      customerId: null,
      holdReason: "no account matches; refunded: sent back by M-Pesa reversal",
    });
    await world.say(OTHER_ADMIN, `/assign SWR0NGPB01 ${customer.accountNumber}`);
    expect(lastText(world.fake, OTHER_ADMIN)).toBe("SWR0NGPB01 is not waiting to be assigned (refunded).");
    expect(await auditRows(world.db, "payment.refunded", `tg:${OTHER_ADMIN}`)).toMatchObject([
      { entityId: String(wrongPaybill!.id), reason: "sent back by M-Pesa reversal" },
    ]);
    await world.say(SUPPORT, "/unmatched");
    expect(lastText(world.fake, SUPPORT)).toBe("No unmatched payments.");
  });
});

describe("the admin channel", () => {
  it("the subscriber bot's worker never takes admin rows", async () => {
    await world.say(OWNER, "/help");
    // Queue one more answer without sending it, then run a worker with the subscriber bot's sender.
    await world.db.execute(sql`select 1`);
    const pendingBefore = await world.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.channel, "telegram_admin"), eq(messageOutbox.status, "pending")));
    expect(pendingBefore).toHaveLength(0);
    await world.bot.api.sendMessage(OWNER, "queued, not sent");
    const subscriberSender = createTelegramSender({ token: world.fake.token, apiRoot: world.fake.apiRoot });
    const counts = await deliverDueChats({
      db: world.ctx.db,
      clock: world.ctx.clock,
      senders: [subscriberSender],
      isp: "x",
    });
    expect(counts.sent).toBe(0);
    const pending = await world.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.channel, "telegram_admin"), eq(messageOutbox.status, "pending")));
    expect(pending).toHaveLength(1);
    await world.sendQueued();
    expect(lastText(world.fake, OWNER)).toBe("queued, not sent");
    expect(shownIn(world.fake, OWNER).length).toBeGreaterThan(0);
  });
});

describe("/assign #<number> past nine digits", () => {
  it("names a waiting payment by a large number, and refuses one no payment can have without changing anything", async () => {
    // Payments' ids are `integer`, up to 2,147,483,647.
    await world.db.execute(sql`alter table payments alter column id restart with 2000000000`);
    const plan = await createPlan(world.db, { priceCents: 40_000 });
    const { customer } = await createCustomerWithSubscription(world.ctx, job, {
      name: "Large Number",
      phone: "+254712300090",
      planId: plan.id,
    });
    await recordPaymentByReference(
      world.ctx,
      { kind: "webhook", id: "mpesa" },
      {
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: "SBX9LARGE1",
        amountCents: 40_000,
        reference: "NOBODY9",
        payerName: "LARGE NUMBER",
      },
    );
    const [waiting] = await world.db.select().from(payments).where(eq(payments.providerRef, "SBX9LARGE1"));
    expect(waiting!.id).toBeGreaterThan(999_999_999);

    await world.say(OTHER_ADMIN, `/assign #2147483648 ${customer.accountNumber}`);
    expect(lastText(world.fake, OTHER_ADMIN)).toBe(
      "#2147483648 is not a payment number (they run from 1 to 2147483647). /unmatched lists them.",
    );
    expect(await ledgerSum(world.db, customer.id)).toBe(-40_000);

    await world.say(OTHER_ADMIN, `/assign #${waiting!.id} ${customer.accountNumber}`);
    expect(lastText(world.fake, OTHER_ADMIN)).toMatch(/SBX9LARGE1 \(KES 400\) credited to /);
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
  });
});
