import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rejectSignup } from "../../src/billing/signups.ts";
import { FakeClock } from "../../src/clock.ts";
import { loadConfig } from "../../src/config.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import {
  auditLog,
  customers,
  invoices,
  messageOutbox,
  routers,
  subscriptions,
} from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { choose, startUssdWorld, type UssdWorld } from "./world.ts";

/** Self sign-up over USSD, Africa's Talking style: a stranger becomes a pending customer. */

let database: Database;
let world: UssdWorld;
const clock = new FakeClock("2026-06-01T06:00:00Z");
const adminPhone = "+254700999001";
let kahawa: number;
let roysambu: number;
let planName: string;

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  const router = (name: string) =>
    database.db
      .insert(routers)
      .values({ name, host: `${name}.example`, port: 8728, username: "api", passwordEncrypted: "x" })
      .returning({ id: routers.id })
      .then((rows) => rows[0]!.id);
  kahawa = await router(`kahawa-${process.pid}`);
  roysambu = await router(`roysambu-${process.pid}`);
  planName = `Home ${process.pid % 1000} Fibre`;
  await createPlan(database.db, { name: planName, priceCents: 250_000 });
  await createPlan(database.db, { name: "Retired Home", priceCents: 100_000, active: false });
  world = await startUssdWorld(ctx, database.db, {
    settings: {
      signupAreas: [
        { name: "Kahawa West", routerId: kahawa },
        { name: "Roysambu", routerId: roysambu },
      ],
      adminPhone,
    },
  });
});
afterAll(async () => {
  await world?.close();
  await database.close();
});

/** Everything a sign-up could create. */
async function snapshot(): Promise<string> {
  const [row] = await queryRows(
    database.db,
    sql`select (select count(*) from customers)::int as customers,
               (select count(*) from subscriptions)::int as subscriptions,
               (select count(*) from invoices)::int as invoices,
               (select count(*) from message_outbox)::int as messages,
               (select count(*) from audit_log)::int as audited,
               (select count(*) from channel_sessions)::int as sessions`,
  );
  return JSON.stringify(row);
}

const planItem = () => new RegExp(`\\n(\\d+)\\. ${planName}: KES 2,500 for 1 month`);

describe("self sign-up over USSD", () => {
  it("makes a stranger a pending customer on the area's router, once", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    expect(await ussd("")).toBe("CON Kibera Net\n1. Buy hotspot voucher\n2. Sign up\n3. Language\n4. Help");
    const plans = await ussd("2");
    expect(plans).toMatch(/^CON Sign up: choose a home internet plan\n/);
    expect(plans).not.toContain("Retired Home");
    const path = await choose(ussd, "2", planItem());
    expect(await ussd(path)).toBe("CON Type your full name:\n0. Back 00. Home");
    expect(await ussd(`${path}*Amina  Wekesa`)).toBe(
      "CON Choose your area:\n1. Kahawa West\n2. Roysambu\n0. Back 00. Home",
    );
    expect(await ussd(`${path}*Amina  Wekesa*2`)).toBe(
      `CON Sign up Amina Wekesa in Roysambu?\n${planName}: KES 2,500 for 1 month\n1. Confirm\n0. Back 00. Home`,
    );

    const done = await ussd(`${path}*Amina  Wekesa*2*1`);
    const [customer] = await database.db.select().from(customers).where(eq(customers.phone, phone));
    expect(customer).toMatchObject({ name: "Amina Wekesa", language: "en" });
    expect(customer!.accountNumber).toMatch(/^TD\d{5}$/);
    expect(done).toBe(
      `END Welcome! Your account is ${customer!.accountNumber}. Pay KES 2,500 by M-Pesa (Pay in this menu) to get connected. Your login details will be sent to you.`,
    );
    expect(done.length).toBeLessThanOrEqual(182);

    const subs = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.customerId, customer!.id));
    expect(subs).toHaveLength(1);
    expect(subs[0]).toMatchObject({ status: "pending", routerId: roysambu });
    const messages = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.dedupeKey, `signup:${customer!.id}`));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ recipient: adminPhone, template: "admin_alert" });
    expect(String(messages[0]!.params.text)).toContain(customer!.accountNumber);
    const welcome = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, "welcome")));
    expect(welcome).toHaveLength(1);
    const audited = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "customer.self_signup"), eq(auditLog.entityId, String(customer!.id))));
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({ actorKind: "subscriber", actorId: phone, channel: "ussd" });
    expect(audited[0]!.details).toMatchObject({ area: "Roysambu", routerId: roysambu });

    // Africa's Talking repeating the confirmation: the same answer, nothing created twice.
    const before = await snapshot();
    expect(await ussd(`${path}*Amina  Wekesa*2*1`)).toBe(done);
    expect(await snapshot()).toBe(before);

    // Dialling again: the customer's menu, with the account waiting for its first payment.
    const again = world.dial(phone);
    expect(await again("")).toContain("1. My account\n2. Pay");
    expect(await again("1")).toContain("Status: Awaiting first payment\nAmount due: KES 2,500");
  });

  it("refuses a second sign-up from the same phone, naming the account", async () => {
    const phone = uniquePhone();
    // Session B starts as a visitor (its language confirmation keeps it one) and walks to the confirmation.
    const b = world.dial(phone);
    const bPath = await choose(b, "3*1*1*2", planItem());
    const bConfirm = `${bPath}*Baraka Otieno*1`;
    expect(await b(bConfirm)).toContain("CON Sign up Baraka Otieno in Kahawa West?");

    // Meanwhile session A signs the phone up.
    const a = world.dial(phone);
    const aPath = await choose(a, "2", planItem());
    expect(await a(`${aPath}*Baraka Otieno*1*1`)).toMatch(/^END Welcome!/);
    const [customer] = await database.db.select().from(customers).where(eq(customers.phone, phone));

    const before = await snapshot();
    expect(await b(`${bConfirm}*1`)).toBe(
      `END You already have account ${customer!.accountNumber}. Dial again to pay or see it.`,
    );
    const after = JSON.parse(await snapshot());
    expect({ ...after, sessions: 0 }).toEqual({ ...JSON.parse(before), sessions: 0 });
    const subs = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.customerId, customer!.id));
    expect(subs).toHaveLength(1);
    expect(subs[0]!.routerId).toBe(kahawa);
    // A new session of the phone gets the customer's menu: no sign-up in it.
    expect(await world.dial(phone)("")).not.toContain("Sign up");
  });

  it("signs up in Kiswahili", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    expect(await ussd("3*2*1")).toBe(
      "CON Lugha imewekwa kuwa Kiswahili.\nKibera Net\n1. Nunua vocha ya hotspot\n2. Jisajili\n3. Lugha\n4. Msaada",
    );
    expect(await ussd("3*2*1*2")).toMatch(/^CON Jisajili: chagua kifurushi cha intaneti ya nyumbani\n/);
    const path = await choose(ussd, "3*2*1*2", new RegExp(`\\n(\\d+)\\. ${planName}: KES 2,500 kwa mwezi 1`));
    expect(await ussd(path)).toBe("CON Andika jina lako kamili:\n0. Rudi 00. Mwanzo");
    expect(await ussd(`${path}*Zawadi Njeri*1`)).toContain("CON Sajili Zawadi Njeri eneo la Kahawa West?");
    const done = await ussd(`${path}*Zawadi Njeri*1*1`);
    const [customer] = await database.db.select().from(customers).where(eq(customers.phone, phone));
    expect(customer).toMatchObject({ name: "Zawadi Njeri", language: "sw" });
    expect(done).toBe(
      `END Karibu! Akaunti yako ni ${customer!.accountNumber}. Lipa KES 2,500 kwa M-Pesa (Lipa kwenye menyu hii) ili uunganishwe. Utatumiwa maelezo ya kuingia.`,
    );
    expect(done.length).toBeLessThanOrEqual(182);
    const [welcome] = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, "welcome")));
    expect(welcome?.language).toBe("sw");
    const [invoice] = await database.db.select().from(invoices).where(eq(invoices.customerId, customer!.id));
    expect(invoice?.amountCents).toBe(250_000);
  });

  it("asks again for a name that is empty, too long or not a name, and changes nothing", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    const path = await choose(ussd, "2", planItem());
    const before = await snapshot();
    const prompt = "Type your name: 2 to 40 letters.\nType your full name:\n0. Back 00. Home";
    expect(await ussd(`${path}*`)).toBe(`CON ${prompt}`);
    expect(await ussd(`${path}*${"Wanjiku ".repeat(6)}`)).toBe(`CON ${prompt}`);
    expect(await ussd(`${path}*12345`)).toBe(`CON ${prompt}`);
    expect(await ussd(`${path}*A`)).toBe(`CON ${prompt}`);
    expect(await snapshot()).toBe(before);
    // A good name after a bad one goes on to the areas.
    expect(await ussd(`${path}*12345*Wanjiku Kamau`)).toMatch(/^CON Choose your area:/);
    expect(await database.db.select().from(customers).where(eq(customers.phone, phone))).toEqual([]);
  });
});

describe("a rejected sign-up dialling the menu", () => {
  it("is told no payment is taken, and no prompt is sent; the account and plan screens say why", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    const path = await choose(ussd, "2", planItem());
    await ussd(`${path}*Juma Otieno*1*1`);
    const [customer] = await database.db.select().from(customers).where(eq(customers.phone, phone));
    const [subscription] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.customerId, customer!.id));
    const { ctx } = billingContext(database.db, clock);
    await rejectSignup(ctx, admin, { subscriptionId: subscription!.id, reason: "area not served" });

    const again = world.dial(phone);
    expect(await again("")).toMatch(/\n2\. Pay\n/);
    const before = await snapshot();
    expect(await again("2")).toBe(
      `END The sign-up of account ${customer!.accountNumber} was not approved, so nothing is owed and it takes no payments. To get connected, call or WhatsApp 0700 123 456.`,
    );
    const notApproved = `END The sign-up of account ${customer!.accountNumber} was not approved, so it has no plan and nothing is owed. To get connected, call or WhatsApp 0700 123 456.`;
    expect(await world.dial(phone)("1")).toBe(notApproved);
    expect(await world.dial(phone)("4")).toBe(notApproved);
    expect(await snapshot()).toBe(before);
  });
});

describe("SIGNUP_AREAS", () => {
  it("maps areas to routers, takes names alone, and can be turned off", () => {
    expect(loadConfig({ SIGNUP_AREAS: "Kahawa West=1, Roysambu = 2" }).SIGNUP_AREAS).toEqual([
      { name: "Kahawa West", routerId: 1 },
      { name: "Roysambu", routerId: 2 },
    ]);
    expect(loadConfig({ SIGNUP_AREAS: "Kahawa West,Roysambu=3" }).SIGNUP_AREAS).toEqual([
      { name: "Kahawa West", routerId: null },
      { name: "Roysambu", routerId: 3 },
    ]);
    expect(loadConfig({ SIGNUP_AREAS: "none" }).SIGNUP_AREAS).toEqual([]);
    expect(loadConfig({}).SIGNUP_AREAS.length).toBeGreaterThan(0);
    expect(() => loadConfig({ SIGNUP_AREAS: "Kahawa West=router1" })).toThrow(/SIGNUP_AREAS/);
  });
});
