import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { billingJobs } from "../src/billing/jobs.ts";
import { applyPayment } from "../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { DAY, FakeClock, HOUR, MINUTE, systemClock } from "../src/clock.ts";
import type { Database } from "../src/db/client.ts";
import { runJob } from "../src/jobs/runner.ts";
import { createLogger } from "../src/logger.ts";
import { createMenuServices } from "../src/menu/services.ts";
import type { MenuSettings } from "../src/menu/types.ts";
import { type AtFake, startAtFake } from "../src/messaging/at-fake.ts";
import { createAtSmsSender } from "../src/messaging/sms-client.ts";
import { startSmsWorker } from "../src/messaging/sms-worker.ts";
import type { RouterOsEmulator } from "../src/network/emulator/server.ts";
import { DarajaClient } from "../src/payments/mpesa/daraja.ts";
import { StkDispatcher } from "../src/payments/mpesa/dispatcher.ts";
import { FakeDaraja } from "../src/payments/mpesa/fake.ts";
import { callbackPaths, createMpesaRoutes } from "../src/payments/routes.ts";
import { createUssdRoutes } from "../src/ussd/routes.ts";
import { emulatedRouter, networkStack, waitFor } from "./network/support.ts";
import { admin, billingContext, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase } from "./support/db.ts";
import { sample } from "./support/metrics.ts";

/**
 * `/metrics` scraped over HTTP while the real code paths do their work: USSD requests, an STK
 * payment settled by Daraja's callback, scheduled jobs through the runner, provisioning delivered
 * to an emulated router, SMS delivered to the Africa's Talking fake. No figure is written by hand.
 */

const silent = createLogger("silent");
const metricsToken = "metricsWorkToken7c1e9b";
const ussdToken = "ussdPathSecret5d2a";
// Daraja refuses callback URLs with words such as "mpesa" in them.
const mpesaToken = "payHookSecret8e4f";
const routerName = "Kibera-1";
const menuSettings: MenuSettings = {
  isp: "Kibera Net",
  support: "0700 123 456",
  timezone: "Africa/Nairobi",
  minPayCents: 1_000,
  maxPayCents: 150_000_00,
};

const clock = new FakeClock("2026-05-04T06:00:00Z");
let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let router: RouterOsEmulator;
let routerId: number;
let network: ReturnType<typeof networkStack>;
let daraja: FakeDaraja;
let at: AtFake;
let dispatcher: StkDispatcher;
let server: ServerType;
let baseUrl: string;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  ({ emulator: router, routerId } = await emulatedRouter(database.db, routerName));
  network = networkStack(database.db, clock);
  // The payer answers the prompt a moment after M-Pesa accepted the push, as on a phone.
  daraja = await FakeDaraja.start({ defaultDelivery: { outcome: "success", delayMs: 100 } });
  at = await startAtFake({ username: "kibera", apiKey: "at-test-key" });
  const app = createApp({
    db: database.db,
    logger: silent,
    clock,
    metricsToken,
    mpesaRoutes: createMpesaRoutes({ ctx, logger: silent, token: mpesaToken }),
    ussdRoutes: createUssdRoutes({
      db: database.db,
      services: createMenuServices(ctx, { planCacheMs: 0 }),
      settings: menuSettings,
      logger: silent,
      token: ussdToken,
    }),
  });
  server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dispatcher = new StkDispatcher({
    ctx,
    // Daraja checks the Timestamp against its own clock, so the client keeps real time.
    gateway: new DarajaClient({
      baseUrl: daraja.url,
      consumerKey: daraja.consumerKey,
      consumerSecret: daraja.consumerSecret,
      shortcode: daraja.shortcode,
      passkey: daraja.passkey,
      clock: systemClock,
    }),
    logger: silent,
    callbackUrl: `${baseUrl}${callbackPaths.stk(mpesaToken)}`,
    baseBackoffMs: 10,
  });
});

afterAll(async () => {
  await dispatcher?.stop();
  await daraja?.close();
  await at?.close();
  if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  await network?.close();
  await router?.stop();
  await database?.close();
});

/** `GET /metrics` over HTTP with the bearer token, as Prometheus scrapes it. */
async function scrape(): Promise<string> {
  const response = await fetch(`${baseUrl}/metrics`, {
    headers: { Authorization: `Bearer ${metricsToken}` },
  });
  expect(response.status).toBe(200);
  return response.text();
}

/** Figures read from one scrape. */
function figures(text: string) {
  const value = (name: string, labels: Record<string, string>) => sample(text, name, labels) ?? 0;
  return {
    requests: (route: string) =>
      value("http_request_duration_seconds_count", { method: "POST", route, status_class: "2xx" }),
    pending: value("tandao_provisioning_pending", { router: routerName }),
    oldestAge: value("tandao_provisioning_oldest_pending_age_seconds", { router: routerName }),
    dead: value("tandao_provisioning_dead", { router: routerName }),
    intents: (status: string) => value("tandao_payment_intents", { status }),
    payments: (status: string) => value("tandao_payments", { status }),
    sms: (status: string) => value("tandao_messages", { channel: "sms", status }),
    runs: (job: string) => value("tandao_job_runs", { job }),
    failures: (job: string) => value("tandao_job_failures", { job }),
  };
}

/** An Africa's Talking USSD session over HTTP: each call posts the whole `text` so far. */
function dial(phone: string, sessionId: string) {
  return async (text: string): Promise<string> => {
    const response = await fetch(`${baseUrl}/ussd/${ussdToken}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ sessionId, serviceCode: "*384*4242#", phoneNumber: phone, text }),
    });
    expect(response.status).toBe(200);
    return response.text();
  };
}

/** A new subscriber on the emulated router, still owing the first period. */
async function signUp(name: string, priceCents = 150_000) {
  const plan = await createPlan(database.db, { priceCents, name: `Fibre ${priceCents / 100}` });
  return createCustomerWithSubscription(ctx, admin, {
    name,
    phone: uniquePhone(),
    planId: plan.id,
    routerId,
  });
}

const ussdRoute = "/ussd/:token?";
const stkRoute = "/hooks/mp/:token/stk";

describe("/metrics follows the work as it happens", () => {
  it("counts USSD requests under their route pattern, never the path with its token", async () => {
    const before = figures(await scrape());
    const ussd = dial(uniquePhone(), `ATUid_metrics_${process.pid}_1`);
    expect(await ussd("")).toMatch(/^CON Kibera Net\n1\. Buy hotspot voucher/);
    expect(await ussd("4")).toMatch(/^(CON|END) /);
    const text = await scrape();
    expect(figures(text).requests(ussdRoute)).toBe(before.requests(ussdRoute) + 2);
    expect(text).not.toContain(ussdToken);
    expect(text).not.toContain(metricsToken);
  });

  it("a sign-up's commands wait in its router's queue, age with the clock, and drain when the worker delivers them", async () => {
    const before = figures(await scrape());
    expect(before.pending).toBe(0);
    expect(before.oldestAge).toBe(0);

    const { subscription } = await signUp("Achieng Otieno");
    const queued = figures(await scrape());
    expect(queued.pending).toBeGreaterThan(0);
    expect(queued.oldestAge).toBe(0);

    clock.advance(3 * MINUTE);
    const waiting = figures(await scrape());
    expect(waiting.pending).toBe(queued.pending);
    expect(waiting.oldestAge).toBe(180);

    expect(await network.worker.drain()).toBeGreaterThan(0);
    expect(router.find("/ppp/secret", subscription.networkUsername)).toMatchObject({ disabled: "true" });
    const delivered = figures(await scrape());
    expect(delivered.pending).toBe(0);
    expect(delivered.oldestAge).toBe(0);
    expect(delivered.dead).toBe(0);
  });

  it("a payment asked over USSD moves the intent pending → succeeded and the payment to applied; its SMS is queued, then sent", async () => {
    const { customer, subscription } = await signUp("Kamau Njoroge");
    await network.worker.drain();
    const before = figures(await scrape());

    // The subscriber pays the amount due from the menu: the intent is recorded, nothing is paid yet.
    const ussd = dial(customer.phone, `ATUid_metrics_${process.pid}_2`);
    expect(await ussd("2")).toContain("1. Pay KES 1,500 now");
    expect(await ussd("2*1")).toMatch(/^END Enter your M-Pesa PIN/);
    const asked = figures(await scrape());
    expect(asked.requests(ussdRoute)).toBe(before.requests(ussdRoute) + 2);
    expect(asked.intents("pending")).toBe(before.intents("pending") + 1);
    expect(asked.intents("succeeded")).toBe(before.intents("succeeded"));
    expect(asked.payments("applied")).toBe(before.payments("applied"));

    // The push goes to Daraja; its callback comes back over HTTP and settles the payment.
    expect(await dispatcher.runOnce()).toBe(1);
    await daraja.idle();
    const paid = figures(await scrape());
    expect(paid.requests(stkRoute)).toBe(before.requests(stkRoute) + 1);
    expect(paid.intents("pending")).toBe(before.intents("pending"));
    expect(paid.intents("succeeded")).toBe(before.intents("succeeded") + 1);
    expect(paid.payments("applied")).toBe(before.payments("applied") + 1);
    // The receipt (and whatever else the payment tells the subscriber) waits for the SMS worker.
    expect(paid.sms("pending")).toBeGreaterThan(before.sms("pending"));
    // Turning the subscriber on waits for the provisioning worker.
    expect(paid.pending).toBeGreaterThan(0);

    const smsWorker = startSmsWorker({
      db: database.db,
      clock,
      sender: createAtSmsSender({ username: "kibera", apiKey: "at-test-key", smsUrl: at.smsUrl }),
      isp: menuSettings.isp,
      logger: silent,
      intervalMs: 20,
    });
    try {
      await waitFor(async () => figures(await scrape()).sms("pending") === 0);
    } finally {
      await smsWorker.stop();
    }
    const sent = figures(await scrape());
    expect(sent.sms("done")).toBe(paid.sms("done") + paid.sms("pending"));
    expect(sent.sms("dead")).toBe(paid.sms("dead"));
    expect(at.inbox.some((m) => m.to === customer.phone && m.message.includes("We received KES 1,500"))).toBe(
      true,
    );

    await network.worker.drain();
    expect(router.find("/ppp/secret", subscription.networkUsername)).toMatchObject({ disabled: "false" });
    expect(figures(await scrape()).pending).toBe(0);

    const text = await scrape();
    expect(text).not.toContain(mpesaToken);
    expect(text).not.toContain(ussdToken);
  });

  it("scheduled jobs through the runner count their runs and failures; a suspension waits in the router's queue", async () => {
    const { customer, subscription, invoice } = await signUp("Wafula Chebet", 200_000);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `first-${customer.id}`,
      amountCents: invoice.amountCents,
    });
    await network.worker.drain();
    const before = figures(await scrape());
    expect(before.pending).toBe(0);

    const job = (name: string) => {
      const found = billingJobs.find((j) => j.name === name);
      if (!found) throw new Error(`no job ${name}`);
      return found;
    };
    const run = (name: string) => runJob(database.db, clock, name, (tx) => job(name).run(tx, ctx));

    // The next bill is issued before the period ends…
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    const invoicing = await run("invoicing");
    expect(invoicing).toMatchObject({ status: "ok" });
    expect(invoicing.counts.issued).toBeGreaterThan(0);
    const invoiced = figures(await scrape());
    expect(invoiced.runs("invoicing")).toBe(before.runs("invoicing") + 1);
    expect(invoiced.failures("invoicing")).toBe(before.failures("invoicing"));

    // …and left unpaid past the grace period, the subscriber is cut off.
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + (ctx.settings.graceDays + 1) * DAY + HOUR));
    const suspensions = await run("suspensions");
    expect(suspensions).toMatchObject({ status: "ok" });
    const suspended = suspensions.counts.suspended ?? 0;
    expect(suspended).toBeGreaterThan(0);
    const cut = figures(await scrape());
    expect(cut.runs("suspensions")).toBe(before.runs("suspensions") + 1);
    expect(cut.pending).toBe(suspended);
    expect(cut.oldestAge).toBe(0);

    // A run that fails is counted as a run and as a failure, and its work is rolled back.
    const failed = await runJob(database.db, clock, "invoicing", async (tx) => {
      await job("invoicing").run(tx, ctx);
      throw new Error("invoice numbering exhausted");
    });
    expect(failed).toMatchObject({ status: "failed", error: "invoice numbering exhausted" });

    clock.advance(10 * MINUTE);
    const later = figures(await scrape());
    expect(later.runs("invoicing")).toBe(before.runs("invoicing") + 2);
    expect(later.failures("invoicing")).toBe(before.failures("invoicing") + 1);
    expect(later.failures("suspensions")).toBe(0);
    expect(later.pending).toBe(suspended);
    expect(later.oldestAge).toBe(600);

    expect(await network.worker.drain()).toBeGreaterThanOrEqual(suspended);
    expect(router.find("/ppp/secret", subscription.networkUsername)).toMatchObject({ disabled: "true" });
    const drained = figures(await scrape());
    expect(drained.pending).toBe(0);
    expect(drained.oldestAge).toBe(0);
  });
});
