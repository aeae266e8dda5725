import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { quotePlanChange } from "../../src/billing/plan-change-quote.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  customers,
  messageOutbox,
  paymentIntents,
  subscriptions,
  vouchers,
} from "../../src/db/schema/index.ts";
import { displayPhone } from "../../src/lib/phone.ts";
import { activeSubscriber, admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { choose, startUssdWorld, type UssdWorld } from "./world.ts";

let database: Database;
let world: UssdWorld;
const clock = new FakeClock("2026-04-01T06:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startUssdWorld(ctx, database.db);
});
afterAll(async () => {
  await world?.close();
  await database.close();
});

/** A signed-up subscriber who still owes the first period. */
async function owingSubscriber(priceCents = 150_000, language: "en" | "sw" = "en") {
  const plan = await createPlan(database.db, { priceCents, name: `Fibre ${priceCents / 100}` });
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone: uniquePhone(),
    planId: plan.id,
    language,
  });
  return { ...created, plan };
}

async function intentsOf(phone: string) {
  return database.db
    .select()
    .from(paymentIntents)
    .where(eq(paymentIntents.phone, phone))
    .orderBy(paymentIntents.id);
}

describe("USSD over HTTP, Africa's Talking style", () => {
  it("shows the account: plan, status, amount due, last payment (no expiry before the first payment)", async () => {
    const { customer } = await owingSubscriber();
    const ussd = world.dial(customer.phone);
    expect(await ussd("")).toBe(
      "CON Kibera Net\n1. My account\n2. Pay\n3. Buy hotspot voucher\n4. Change plan\n5. Language\n6. Help",
    );
    const account = await ussd("1");
    expect(account).toBe(
      "CON Plan: Fibre 1500\nStatus: Awaiting first payment\nAmount due: KES 1,500\nNo payment yet\n0. Back",
    );
    // 0 goes back to the main menu.
    expect(await ussd("1*0")).toContain("1. My account");
  });

  it("pays the amount due in three screens; the receipt arrives by SMS", async () => {
    const { customer, subscription } = await owingSubscriber();
    const sessionId = `ATUid_pay_${customer.id}`;
    const ussd = world.dial(customer.phone, sessionId);
    const screens = [await ussd(""), await ussd("2"), await ussd("2*1")];
    expect(screens[1]).toBe(
      "CON You owe KES 1,500.\n1. Pay KES 1,500 now\n2. Pay another amount\n3. Pay from another M-Pesa number\n0. Back",
    );
    expect(screens[2]).toBe(
      "END Enter your M-Pesa PIN on the prompt to pay KES 1,500. You will get a message when it is received.",
    );
    expect(screens.filter((s) => s.startsWith("CON ")).length + 1).toBeLessThanOrEqual(3);

    // Africa's Talking repeating the request does not ask M-Pesa twice.
    expect(await ussd("2*1")).toBe(screens[2]);
    const intents = await intentsOf(customer.phone);
    expect(intents).toHaveLength(1);
    expect(intents[0]).toMatchObject({
      purpose: "balance",
      amountCents: 150_000,
      customerId: customer.id,
      channel: "ussd",
      channelSessionId: `ussd:${sessionId}`,
      status: "pending",
    });

    await world.settle();
    expect((await intentsOf(customer.phone))[0]!.status).toBe("succeeded");
    const [sub] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(sub!.status).toBe("active");
    const sms = await world.at.waitFor((m) => m.to === customer.phone && m.message.includes("We received"));
    expect(sms.message).toMatch(/^Kibera Net: We received KES 1,500 \(M-Pesa [A-Z0-9]{10}\) for account /);

    const after = await world.dial(customer.phone)("1");
    expect(after).toMatch(/Status: Active\nExpires: \d+ \w+ 2026\n/);
    expect(after).toMatch(/Balance: KES 0\nLast payment: KES 1,500, \d+ \w+ 2026/);
  });

  it("pays from another M-Pesa number: the prompt goes there, the account is credited, the receipt comes here", async () => {
    const { customer, subscription } = await owingSubscriber();
    const payer = uniquePhone();
    const ussd = world.dial(customer.phone);
    expect(await ussd("2*3")).toBe(
      "CON Enter the M-Pesa number to pay from (e.g. 0712 345 678):\n0. Back 00. Home",
    );
    expect(await ussd("2*3*12345")).toBe(
      "CON Enter a Kenyan mobile number, e.g. 0712 345 678.\nEnter the M-Pesa number to pay from (e.g. 0712 345 678):\n0. Back 00. Home",
    );
    const local = `0${payer.slice(4)}`;
    expect(await ussd(`2*3*12345*${local}`)).toMatch(/^CON Enter amount in KES/);
    expect(await ussd(`2*3*12345*${local}*1500`)).toBe(
      `CON Pay KES 1,500 to Kibera Net from M-Pesa ${displayPhone(payer)}?\n1. Confirm\n0. Back 00. Home`,
    );
    expect(await ussd(`2*3*12345*${local}*1500*1`)).toBe(
      `END The prompt to pay KES 1,500 is on M-Pesa ${displayPhone(payer)}: the PIN is entered there. You will get a message when it is received.`,
    );
    expect(await intentsOf(customer.phone)).toHaveLength(0);
    expect(await intentsOf(payer)).toMatchObject([
      { purpose: "balance", amountCents: 150_000, customerId: customer.id },
    ]);

    await world.settle();
    const [sub] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(sub!.status).toBe("active");
    const sms = await world.at.waitFor((m) => m.to === customer.phone && m.message.includes("We received"));
    expect(sms.message).toMatch(/^Kibera Net: We received KES 1,500 \(M-Pesa [A-Z0-9]{10}\) for account /);
  });

  it("pays another amount after a confirm step; a bad amount repeats the screen with a hint", async () => {
    const { customer } = await owingSubscriber();
    const ussd = world.dial(customer.phone);
    expect(await ussd("2*2")).toBe("CON Enter amount in KES (KES 10 to KES 150,000):\n0. Back 00. Home");
    expect(await ussd("2*2*abc")).toBe(
      "CON Enter a whole amount in KES.\nEnter amount in KES (KES 10 to KES 150,000):\n0. Back 00. Home",
    );
    // A misplaced comma is a slip, not thousands: "10,00" is asked again, not read as KES 1,000.
    expect(await ussd("2*2*10,00")).toBe(
      "CON Enter a whole amount in KES.\nEnter amount in KES (KES 10 to KES 150,000):\n0. Back 00. Home",
    );
    expect(await ussd("2*2*abc*5")).toMatch(/^CON Amount must be KES 10 to KES 150,000.\nEnter amount/);
    expect(await ussd("2*2*abc*5*500")).toBe(
      `CON Pay KES 500 to Kibera Net from M-Pesa ${displayPhone(customer.phone)}?\n1. Confirm\n0. Back 00. Home`,
    );
    expect(await intentsOf(customer.phone)).toHaveLength(0);
    expect(await ussd("2*2*abc*5*500*1")).toMatch(
      /^END Enter your M-Pesa PIN on the prompt to pay KES 500\./,
    );
    expect((await intentsOf(customer.phone)).map((i) => i.amountCents)).toEqual([50_000]);
  });

  it("sells a hotspot voucher to a number that is not a customer, in four screens, code by SMS", async () => {
    const hour = await createPlan(database.db, {
      name: "1 Hour",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
      timeLimitSeconds: 3600,
    });
    const phone = uniquePhone();
    expect(await world.dial(phone)("")).toBe(
      "CON Kibera Net\n1. Buy hotspot voucher\n2. How to sign up\n3. Language\n4. Help",
    );
    expect(await world.dial(phone)("2")).toContain("call or WhatsApp 0700 123 456");

    const ussd = world.dial(phone);
    const screens = [await ussd(""), await ussd("1"), await ussd("1*1"), await ussd("1*1*1")];
    // The name already says how long the voucher lasts: the screens do not say it again.
    expect(screens[1]).toContain("Choose a hotspot voucher:\n1. 1 Hour: KES 20\n");
    expect(screens[2]).toBe(
      `CON 1 Hour: KES 20\nBuy this voucher with M-Pesa ${displayPhone(phone)}?\n1. Confirm\n0. Back 00. Home`,
    );
    expect(screens[3]).toBe(
      "END Enter your M-Pesa PIN on the prompt to pay KES 20. Your voucher code will be sent to you.",
    );
    expect(screens.length).toBeLessThanOrEqual(4);
    expect(await intentsOf(phone)).toMatchObject([{ purpose: "voucher", planId: hour.id, customerId: null }]);

    await world.settle();
    const sms = await world.at.waitFor((m) => m.to === phone && m.message.includes("voucher code"));
    const code = /voucher code is ([A-Z0-9]+),/.exec(sms.message)?.[1];
    expect(code).toBeTruthy();
    const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.code, code!));
    expect(voucher).toMatchObject({ status: "sold", soldToPhone: phone, planId: hour.id });
  });

  it("keeps the list a session was shown, even if an admin adds a cheaper plan meanwhile", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    const list = await ussd("1");
    const first = /\n1\. (.+): KES/.exec(list)?.[1];
    expect(first).toBeTruthy();
    await createPlan(database.db, {
      name: "Promo 5 Min",
      kind: "hotspot",
      priceCents: 100,
      periodUnit: "hours",
    });
    expect(await ussd("1*1")).toMatch(new RegExp(`^CON ${first}: KES [\\d,]+.*\nBuy this voucher`));
    expect(await world.dial(phone)("1")).toContain("1. Promo 5 Min: KES 1 for 1 hour\n");
  });

  it("changes plan: shows the prorated quote, asks M-Pesa for it, switches on payment", async () => {
    const basic = await createPlan(database.db, { name: "Basic 5", priceCents: 100_000 });
    const fast = await createPlan(database.db, { name: "Fast 20", priceCents: 250_000 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    clock.advance(10 * DAY);
    const ussd = world.dial(customer.phone);
    const list = await ussd("4");
    expect(list).toMatch(/^CON Now on Basic 5\. Choose a new plan:\n/);
    const chosen = await choose(ussd, "4", /(\d+)\. Fast 20: KES 2,500 for 1 month\n/);
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: fast.id,
    });
    expect(quote.payableCents).toBeGreaterThan(0);
    expect(quote.payableCents).toBeLessThan(150_000);
    expect(quote.payableCents % 100).toBe(0);
    const shillings = quote.payableCents / 100;
    expect(await ussd(chosen)).toBe(
      `CON Fast 20: KES 2,500 for 1 month\nChange now. Pay KES ${shillings.toLocaleString("en-US")} for the rest of this period.\n1. Confirm\n0. Back 00. Home`,
    );
    expect(await ussd(`${chosen}*1`)).toMatch(
      /^END Enter your M-Pesa PIN on the prompt to pay KES [\d,]+\. Your plan changes/,
    );
    expect(await intentsOf(customer.phone)).toMatchObject([
      {
        purpose: "plan_change",
        amountCents: shillings * 100,
        planId: fast.id,
        subscriptionId: subscription.id,
      },
    ]);

    await world.settle();
    const [sub] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(sub!.planId).toBe(fast.id);
    await world.at.waitFor((m) => m.to === customer.phone && m.message.includes("Your plan is now Fast 20"));
  });

  it("schedules a downgrade for the end of the period without a payment", async () => {
    const big = await createPlan(database.db, { name: "Big 50", priceCents: 400_000 });
    const small = await createPlan(database.db, { name: "Small 2", priceCents: 90_000 });
    const { customer, subscription } = await activeSubscriber(ctx, big.id);
    const ussd = world.dial(customer.phone);
    const chosen = await choose(ussd, "4", /(\d+)\. Small 2: KES 900 for 1 month\n/);
    expect(await ussd(chosen)).toMatch(
      /^CON Small 2: KES 900 for 1 month\nChange on \d+ \w+ 20\d\d\. Nothing to pay now\.\n1\. Confirm/,
    );
    const [before] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(before!.nextPlanId).toBeNull();
    expect(await ussd(`${chosen}*1`)).toMatch(/^END Done\. Your plan changes to Small 2 on /);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(after).toMatchObject({ planId: big.id, nextPlanId: small.id });
    expect(await intentsOf(customer.phone)).toHaveLength(0);
  });

  it("switches to Kiswahili after a confirm; every screen and SMS is then in Kiswahili", async () => {
    await createPlan(database.db, { name: "Siku 1", kind: "hotspot", priceCents: 5_000, periodUnit: "days" });
    const { customer } = await owingSubscriber(200_000);
    let ussd = world.dial(customer.phone);
    expect(await ussd("5")).toBe("CON Choose language / Chagua lugha:\n1. English\n2. Kiswahili\n0. Back");
    expect(await ussd("5*2")).toBe(
      "CON Tumia Kiswahili kwa menyu na jumbe?\n1. Thibitisha\n0. Rudi 00. Mwanzo",
    );
    const [unchanged] = await database.db.select().from(customers).where(eq(customers.id, customer.id));
    expect(unchanged!.language).toBe("en");
    expect(await ussd("5*2*1")).toBe(
      "CON Lugha imewekwa kuwa Kiswahili.\nKibera Net\n1. Akaunti yangu\n2. Lipa\n3. Nunua vocha ya hotspot\n4. Badilisha kifurushi\n5. Lugha\n6. Msaada",
    );
    const [changed] = await database.db.select().from(customers).where(eq(customers.id, customer.id));
    expect(changed!.language).toBe("sw");
    // The rest of this session continues from the main menu, in Kiswahili.
    expect(await ussd("5*2*1*6")).toMatch(/^CON Msaada: piga simu/);

    ussd = world.dial(customer.phone);
    const walk = ["", "1", "2", "2*2", "2*2*x", "2*2*300", "3", "3*1", "4", "5", "5*1", "6"];
    const english =
      /\b(Back|Home|Pay|Choose|Confirm|Enter|Balance|Plan|Status|Help|Language|account|amount|voucher code)\b/;
    for (const text of walk) {
      const screen = await ussd(text);
      expect(screen, text).toMatch(/^(CON|END) /);
      if (text !== "5" && text !== "5*1") expect(screen, text).not.toMatch(english);
    }
    expect(await ussd("1")).toContain("Hali: Inasubiri malipo ya kwanza\nDeni: KES 2,000\n");
    expect(await ussd("2")).toBe(
      "CON Unadaiwa KES 2,000.\n1. Lipa KES 2,000 sasa\n2. Lipa kiasi kingine\n3. Lipa kutoka namba nyingine ya M-Pesa\n0. Rudi",
    );
    expect(await ussd("3*1")).toContain("Nunua vocha hii kwa M-Pesa");
    expect(await ussd("2*1")).toMatch(/^END Ingiza PIN yako ya M-Pesa/);
    await world.settle();
    const sms = await world.at.waitFor((m) => m.to === customer.phone && m.message.includes("Tumepokea"));
    expect(sms.message).toMatch(/^Kibera Net: Tumepokea KES 2,000 \(M-Pesa [A-Z0-9]{10}\) kwa akaunti /);
  });

  it("remembers a stranger's language for the session only", async () => {
    const phone = uniquePhone();
    const first = world.dial(phone);
    expect(await first("3*2*1")).toMatch(/^CON Lugha imewekwa kuwa Kiswahili\.\nKibera Net\n1\. Nunua vocha/);
    expect(await first("3*2*1*4")).toMatch(/^CON Msaada/);
    expect(await world.dial(phone)("")).toMatch(/^CON Kibera Net\n1\. Buy hotspot voucher/);
  });

  it("texts a stranger who chose Kiswahili their voucher code in Kiswahili", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    expect(await ussd("3*2*1")).toMatch(/^CON Lugha imewekwa kuwa Kiswahili\.\nKibera Net\n1\. Nunua vocha/);
    expect(await ussd("3*2*1*1*1")).toMatch(/Nunua vocha hii kwa M-Pesa/);
    expect(await ussd("3*2*1*1*1*1")).toMatch(/^END Ingiza PIN yako ya M-Pesa/);
    expect(await intentsOf(phone)).toMatchObject([{ purpose: "voucher", customerId: null, language: "sw" }]);
    await world.settle();
    const sms = await world.at.waitFor((m) => m.to === phone && m.message.includes("vocha"));
    expect(sms.message).toMatch(/^Kibera Net: Nambari ya vocha yako ya .+ ni [A-Z0-9]+, inatumika hadi /);
  });

  it("answers malformed posts with a clean END, and an unknown key with a hint", async () => {
    const bad = await world.post({ sessionId: "", phoneNumber: "+254712345678", text: "" });
    expect(bad).toEqual({
      status: 200,
      text: "END Sorry, we could not read that request. Please dial again.",
    });
    expect((await world.post({ sessionId: "x", phoneNumber: "hello", text: "1" })).text).toMatch(
      /^END Sorry/,
    );
    expect(
      (await world.post({ sessionId: "x", phoneNumber: "0712345678", text: "1".repeat(700) })).text,
    ).toMatch(/^END /);
    const raw = await fetch(`${world.baseUrl}/ussd`, {
      method: "POST",
      body: "{not json",
      headers: { "content-type": "application/json" },
    });
    expect(raw.status).toBe(200);
    expect(await raw.text()).toMatch(/^END Sorry/);
    const ended = await world.post({
      sessionId: "ATUid_done",
      phoneNumber: "+254712345678",
      status: "Success",
      input: "1*1",
      durationInMillis: "12000",
      serviceCode: "*384#",
      networkCode: "63902",
    });
    expect(ended).toEqual({ status: 200, text: "OK" });
    const phone = uniquePhone();
    expect(await world.dial(phone)("7")).toBe(
      "CON Invalid choice.\nKibera Net\n1. Buy hotspot voucher\n2. How to sign up\n3. Language\n4. Help",
    );
  });

  it("keeps the endpoint behind the token when one is configured", async () => {
    const guarded = await startUssdWorld(ctx, database.db, { token: "s3cr3t-ussd" });
    try {
      const fields = { sessionId: "t1", phoneNumber: uniquePhone(), text: "", serviceCode: "*384#" };
      expect((await guarded.post(fields)).status).toBe(404);
      expect((await guarded.post(fields, "/ussd/wrong")).status).toBe(404);
      const ok = await guarded.post(fields, "/ussd/s3cr3t-ussd");
      expect(ok.status).toBe(200);
      expect(ok.text).toMatch(/^CON Kibera Net/);
      // Without a token configured, a path with one is not served either.
      expect((await world.post(fields, "/ussd/s3cr3t-ussd")).status).toBe(404);
    } finally {
      await guarded.close();
    }
  });
});

describe("a confirmation acts once", () => {
  it("records one intent when Africa's Talking sends the same confirm several times at once", async () => {
    const { customer } = await owingSubscriber();
    const sessionId = `ATUid_race_${customer.id}`;
    const ussd = world.dial(customer.phone, sessionId);
    await ussd("2");
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => world.dial(customer.phone, sessionId)("2*1")),
    );
    // Every copy is told what the first one did: the prompt is on its way.
    for (const answer of answers) expect(answer).toMatch(/^END Enter your M-Pesa PIN/);
    expect(await intentsOf(customer.phone)).toHaveLength(1);
    // Input after the session ended (no real gateway sends it) does not act again either.
    expect(await ussd("2*1*1")).toBe("END Sorry, we could not read that request. Please dial again.");
    expect(await intentsOf(customer.phone)).toHaveLength(1);
  });
});

describe("no state change without a confirm", () => {
  it("never records an intent on the way to the confirm screen", async () => {
    const { customer } = await owingSubscriber();
    const ussd = world.dial(customer.phone);
    for (const text of ["", "2", "2*2", "2*2*900", "3", "3*1", "4", "5", "5*2", "1", "6"]) await ussd(text);
    expect(await intentsOf(customer.phone)).toHaveLength(0);
    const [row] = await database.db
      .select()
      .from(customers)
      .where(and(eq(customers.id, customer.id), eq(customers.language, "en")));
    expect(row).toBeTruthy();
  });
});

describe("a downgrade chosen on USSD in the grace days after the period end", () => {
  it("is not announced as done now: the plan only changes with the next period's payment", async () => {
    const big = await createPlan(database.db, { name: "Grace Big", priceCents: 400_000 });
    const small = await createPlan(database.db, { name: "Grace Small", priceCents: 90_000 });
    const { customer, subscription } = await activeSubscriber(ctx, big.id);
    // The renewal is out and unpaid; the period ended 12 hours ago (grace day, still active).
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 12 * HOUR));

    const ussd = world.dial(customer.phone);
    const chosen = await choose(ussd, "4", /(\d+)\. Grace Small: KES 900 for 1 month\n/);
    const confirm = await ussd(chosen);
    const done = await ussd(`${chosen}*1`);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    // What was done: the change waits for the next period (paid for by the renewal still owed).
    expect(after).toMatchObject({ planId: big.id, nextPlanId: small.id });
    // What the subscriber is told says so, not "Change now" / "Your plan is now Grace Small".
    expect(confirm).not.toContain("Change now");
    // Nor a date: the period end is past, and the change comes with the next period's payment.
    expect(confirm).toContain("Change with your next payment. Nothing to pay now.");
    expect(done).toBe("END Done. Your plan changes to Grace Small when you pay for the next period.");
    const [notice] = await database.db
      .select()
      .from(messageOutbox)
      .where(
        and(
          eq(messageOutbox.recipient, customer.phone),
          eq(messageOutbox.template, "plan_change_next_payment"),
        ),
      );
    expect(notice?.params).toEqual({ plan: "Grace Small" });
  });
});
