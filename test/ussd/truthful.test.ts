import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers, paymentIntents, subscriptions } from "../../src/db/schema/index.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { formatDate, type Language } from "../../src/messaging/render.ts";
import { createUssdRoutes } from "../../src/ussd/routes.ts";
import { activeSubscriber, admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { choose, settings, silent, startUssdWorld, type UssdWorld } from "./world.ts";

/** What a subscriber is told, end to end over USSD, M-Pesa and SMS, in English and Kiswahili. */

let database: Database;
let world: UssdWorld;
const clock = new FakeClock("2026-06-01T06:00:00Z");
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

const languages: Language[] = ["en", "sw"];
const smsTo = (phone: string) => world.at.inbox.filter((m) => m.to === phone).map((m) => m.message);
const shillings = (text: string | undefined) => Number((text ?? "NaN").replace(/,/g, ""));

async function setLanguage(customerId: number, language: Language) {
  await database.db.update(customers).set({ language }).where(eq(customers.id, customerId));
}

async function subscription(id: number) {
  const [row] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, id));
  return row!;
}

describe("a first payment", () => {
  for (const language of languages) {
    it(`sends the receipt, then "now active" with the PPPoE username and password (${language})`, async () => {
      const plan = await createPlan(database.db, {
        name: `Fibre First ${language}`,
        nameSw: `Nyumbani Kwanza ${language}`,
        priceCents: 150_000,
      });
      const { customer } = await createCustomerWithSubscription(ctx, admin, {
        name: "Njeri Wambui",
        phone: uniquePhone(),
        planId: plan.id,
        language,
      });
      const ussd = world.dial(customer.phone);
      // Before the first payment "my account" shows no end date: nothing has been paid for.
      const before = await ussd("1");
      expect(before).toContain(
        language === "en"
          ? "Status: Awaiting first payment\nAmount due:"
          : "Hali: Inasubiri malipo ya kwanza\nDeni:",
      );
      expect(before).not.toMatch(/Expires|Kinaisha/);
      await ussd("2*1");
      await world.settle();

      const [sub] = await database.db
        .select()
        .from(subscriptions)
        .where(eq(subscriptions.customerId, customer.id));
      const until = formatDate(language, sub!.currentPeriodEnd);
      const texts = smsTo(customer.phone);
      expect(texts).toHaveLength(3);
      expect(texts[1]).toMatch(
        language === "en"
          ? /^Kibera Net: We received KES 1,500 \(M-Pesa \w+\) for account TD\d+\. Balance: KES 0\. Thank you\.$/
          : /^Kibera Net: Tumepokea KES 1,500 \(M-Pesa \w+\) kwa akaunti TD\d+\. Salio: KES 0\. Asante\.$/,
      );
      expect(texts[2]).toBe(
        language === "en"
          ? `Kibera Net: Your internet (Fibre First en) is now active, paid up to ${until}. PPPoE username: ${sub!.networkUsername}, password: ${sub!.networkPassword}`
          : `Kibera Net: Intaneti yako (Nyumbani Kwanza sw) sasa inatumika, umelipia hadi ${until}. PPPoE jina la mtumiaji: ${sub!.networkUsername}, nenosiri: ${sub!.networkPassword}`,
      );
      expect(texts.join("\n")).not.toMatch(/back on|imerudi/);
      const after = await world.dial(customer.phone)("1");
      expect(after).toContain(language === "en" ? `Expires: ${until}\n` : `Kinaisha: ${until}\n`);
    });
  }
});

describe("a payment that ends a suspension", () => {
  for (const language of languages) {
    it(`sends the receipt first, then "back on" (${language})`, async () => {
      const plan = await createPlan(database.db, { priceCents: 120_000 });
      const { customer, subscription: sub } = await activeSubscriber(ctx, plan.id);
      await setLanguage(customer.id, language);
      clock.set(new Date(sub.currentPeriodEnd.getTime() - 4 * DAY));
      await issueRecurringInvoices(ctx, job);
      clock.set(new Date(sub.currentPeriodEnd.getTime() + DAY + HOUR));
      await suspendOverdue(ctx, job);
      expect((await subscription(sub.id)).status).toBe("suspended");

      await world.dial(customer.phone)("2*1");
      await world.settle();
      const texts = smsTo(customer.phone);
      const until = formatDate(language, (await subscription(sub.id)).currentPeriodEnd);
      expect(texts.slice(-2)).toEqual(
        language === "en"
          ? [
              expect.stringMatching(/^Kibera Net: We received KES 1,200 .* Balance: KES 0\. Thank you\.$/),
              `Kibera Net: Your internet is back on. Paid up to ${until}. Thank you.`,
            ]
          : [
              expect.stringMatching(/^Kibera Net: Tumepokea KES 1,200 .* Salio: KES 0\. Asante\.$/),
              `Kibera Net: Intaneti yako imerudi. Umelipia hadi ${until}. Asante.`,
            ],
      );
    });
  }
});

describe("an upgrade paid by M-Pesa", () => {
  for (const language of languages) {
    it(`agrees everywhere: quote shown = M-Pesa amount = charge in the SMS = what the receipt implies (${language})`, async () => {
      // 20 of 30 days left: the exact difference is KES 666.67, which no message may show.
      const basic = await createPlan(database.db, {
        name: `Basic ${language}`,
        priceCents: 100_000,
        periodUnit: "days",
        periodCount: 30,
      });
      const fast = await createPlan(database.db, {
        name: `Fast ${language}`,
        nameSw: `Kasi ${language}`,
        priceCents: 200_000,
        periodUnit: "days",
        periodCount: 30,
        dataCapBytes: 200 * 1024 ** 3,
      });
      const { customer, subscription: sub } = await activeSubscriber(ctx, basic.id);
      await setLanguage(customer.id, language);
      clock.advance(10 * DAY);
      const ussd = world.dial(customer.phone);
      const chosen = await choose(
        ussd,
        "4",
        language === "en"
          ? /(\d+)\. Fast en: KES 2,000 for 30 days, 200 GB data\n/
          : /(\d+)\. Kasi sw: KES 2,000 kwa siku 30, data 200 GB\n/,
      );
      const confirm = await ussd(chosen);
      const quoted = shillings(
        (language === "en"
          ? /\nChange now\. Pay KES ([\d,]+) for the rest of this period\.\n1\. Confirm/
          : /\nBadilisha sasa, lipa KES ([\d,]+) kwa muda uliobaki\.\n1\. Thibitisha/
        ).exec(confirm)?.[1],
      );
      expect(quoted).toBe(666);
      expect(await ussd(`${chosen}*1`)).toMatch(language === "en" ? /pay KES 666\./ : /kulipa KES 666\./);
      await world.settle();

      const [intent] = await database.db
        .select()
        .from(paymentIntents)
        .where(eq(paymentIntents.phone, customer.phone));
      expect(intent!.amountCents).toBe(quoted * 100);
      const push = world.daraja.pushes.find((p) => `+${p.msisdn}` === customer.phone);
      expect(push?.amount).toBe(quoted);

      const [receipt, changed] = smsTo(customer.phone).slice(-2);
      const received = (
        language === "en"
          ? /We received KES ([\d,]+) .* Balance: KES ([\d,]+)\. Thank you\.$/
          : /Tumepokea KES ([\d,]+) .* Salio: KES ([\d,]+)\. Asante\.$/
      ).exec(receipt ?? "");
      const charged = (
        language === "en"
          ? /^Kibera Net: Your plan is now Fast en\. Charged KES ([\d,]+) for the rest of this period\.$/
          : /^Kibera Net: Kifurushi chako sasa ni Kasi sw\. Umetozwa KES ([\d,]+) kwa muda uliobaki wa kipindi hiki\.$/
      ).exec(changed ?? "");
      expect(shillings(received?.[1])).toBe(quoted);
      expect(shillings(charged?.[1])).toBe(quoted);
      const balance = /(?:Balance|Salio): (-?KES [\d,.]+)/.exec(await world.dial(customer.phone)("1"))?.[1];
      expect(balance).toBe("KES 0");
      expect(shillings(received?.[2]) - shillings(charged?.[1])).toBe(0);
      expect([confirm, receipt, changed].join("\n")).not.toMatch(/KES [\d,]+\.\d/);
      expect((await subscription(sub.id)).planId).toBe(fast.id);
    });
  }
});

describe("numbers from countries that are not served", () => {
  const foreign = [
    ["+256712345678", "Uganda", "Uganda"],
    ["256712345678", "Uganda", "Uganda"],
    ["+447912345678", "United Kingdom", "Ufalme wa Muungano"],
    ["447912345678", "United Kingdom", "Ufalme wa Muungano"],
  ] as const;
  for (const [phone, en, sw] of foreign) {
    it(`are told so in English and Kiswahili, whatever they type: ${phone}`, async () => {
      for (const text of ["", "1", "1*1*1"]) {
        const answer = await world.post({ sessionId: `foreign-${phone}`, phoneNumber: phone, text });
        expect(answer.text).toBe(
          `END Sorry, Kibera Net does not serve phone numbers from ${en}.\nSamahani, Kibera Net haihudumii nambari za simu za ${sw}.`,
        );
      }
      const intents = await database.db
        .select()
        .from(paymentIntents)
        .where(eq(paymentIntents.channelSessionId, `ussd:foreign-${phone}`));
      expect(intents).toEqual([]);
    });
  }

  it("are served when their country is configured (SERVED_COUNTRIES=KE,UG)", async () => {
    const wider = createUssdRoutes({
      db: database.db,
      services: createMenuServices(ctx),
      settings: { ...settings, servedCountries: ["KE", "UG"] },
      logger: silent,
    });
    const post = async (phoneNumber: string) => {
      const body = new URLSearchParams({ sessionId: `wide-${phoneNumber}`, phoneNumber, text: "" });
      return (await wider.request("/", { method: "POST", body })).text();
    };
    expect(await post("+256712345678")).toMatch(/^CON Kibera Net\n1\. Buy hotspot voucher/);
    expect(await post("0712345678")).toMatch(/^CON Kibera Net\n/);
    expect(await post("+447912345678")).toMatch(/^END Sorry, Kibera Net does not serve phone numbers/);
  });
});

describe("plans on Kiswahili screens and in Kiswahili SMS", () => {
  it("use the Kiswahili name, say the period and data cap once, and a voucher SMS names it the same way", async () => {
    await createPlan(database.db, {
      name: "Hotspot Day Pass",
      kind: "hotspot",
      priceCents: 4_000,
      periodUnit: "hours",
      periodCount: 24,
    });
    await createPlan(database.db, {
      name: "Hotspot Plus",
      nameSw: "Hotspot Zaidi",
      kind: "hotspot",
      priceCents: 5_000,
      periodUnit: "days",
      dataCapBytes: 2 * 1024 ** 3,
    });
    await createPlan(database.db, {
      name: "Week 10GB",
      kind: "hotspot",
      priceCents: 30_000,
      periodUnit: "days",
      periodCount: 7,
      dataCapBytes: 10 * 1024 ** 3,
    });
    const owner = await createPlan(database.db, {
      name: "Home Sw",
      nameSw: "Nyumbani Sw",
      priceCents: 90_000,
    });
    const { customer } = await activeSubscriber(ctx, owner.id);
    await setLanguage(customer.id, "sw");
    const ussd = world.dial(customer.phone);
    expect(await ussd("1")).toMatch(/^CON Kifurushi: Nyumbani Sw\nHali: Inatumika\nKinaisha: /);
    const day = await choose(ussd, "3", /(\d+)\. Hotspot Zaidi: KES 50 kwa siku 1, data 2 GB\n/);
    // A name that says "week" and "10GB" is not followed by them again.
    await choose(ussd, "3", /(\d+)\. Week 10GB: KES 300\n/);
    // Without a Kiswahili name the English one is shown, and its "Day" already says the 24 hours.
    await choose(ussd, "3", /(\d+)\. Hotspot Day Pass: KES 40\n/);
    expect(await ussd(day)).toMatch(
      /^CON Hotspot Zaidi: KES 50 kwa siku 1, data 2 GB\nNunua vocha hii kwa M-Pesa 07\d\d \d{6}\?\n1\. Thibitisha/,
    );
    const english = world.dial(uniquePhone());
    await choose(english, "1", /(\d+)\. Hotspot Plus: KES 50 for 1 day, 2 GB data\n/);
    await choose(english, "1", /(\d+)\. Hotspot Day Pass: KES 40\n/);

    expect(await ussd(`${day}*1`)).toMatch(/^END Ingiza PIN yako ya M-Pesa ili kulipa KES 50\./);
    await world.settle();
    expect(smsTo(customer.phone).at(-1)).toMatch(
      /^Kibera Net: Nambari ya vocha yako ya Hotspot Zaidi ni \w+,/,
    );
  });
});

describe("help", () => {
  for (const language of languages) {
    it(`tells a customer their account number, and a visitor nothing about one (${language})`, async () => {
      const plan = await createPlan(database.db, { priceCents: 80_000 });
      const { customer } = await activeSubscriber(ctx, plan.id);
      await setLanguage(customer.id, language);
      expect(await world.dial(customer.phone)("6")).toBe(
        language === "en"
          ? `CON Help: call or WhatsApp 0700 123 456. Pay by M-Pesa here or to account number ${customer.accountNumber}.\n0. Back`
          : `CON Msaada: piga simu au tuma WhatsApp kwa 0700 123 456. Lipa kwa M-Pesa hapa au kwa nambari ya akaunti ${customer.accountNumber}.\n0. Rudi`,
      );
      const visitor = world.dial(uniquePhone());
      if (language === "sw") await visitor("3*2*1");
      const help = await visitor(language === "en" ? "4" : "3*2*1*4");
      expect(help).toMatch(language === "en" ? /^CON Help: call or WhatsApp/ : /^CON Msaada: piga simu/);
      expect(help).not.toMatch(/account|akaunti/);
    });
  }
});
