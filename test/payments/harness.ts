import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { and, eq, type sql } from "drizzle-orm";
import type { Hono } from "hono";
import { createApp } from "../../src/app.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { DAY, type FakeClock, HOUR, systemClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { ledgerEntries, paymentIntents, subscriptions } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import { DarajaClient } from "../../src/payments/mpesa/daraja.ts";
import { StkDispatcher } from "../../src/payments/mpesa/dispatcher.ts";
import { type Delivery, FakeDaraja, type FakeDarajaOptions } from "../../src/payments/mpesa/fake.ts";
import type { RecoveryOptions } from "../../src/payments/mpesa/recovery.ts";
import {
  callbackPaths,
  createMpesaInbox,
  type MpesaRouteDeps,
  type MpesaRoutes,
} from "../../src/payments/routes.ts";
import { activeSubscriber, createPlan, job } from "../support/billing.ts";

export const silent = createLogger("silent");
export const token = "t0k3n5ecret42abcd";

/** The real app on a real port, the real client, and the Daraja fake posting back over HTTP. */
export interface Harness {
  fake: FakeDaraja;
  client: DarajaClient;
  dispatcher: StkDispatcher;
  app: Hono;
  baseUrl: string;
  stkUrl: string;
  recovery: RecoveryOptions;
  /** The inbox behind the app's M-Pesa routes (for `retryInbox`). */
  mpesa: MpesaRoutes;
  close(): Promise<void>;
}

export async function startHarness(
  ctx: BillingContext,
  options: { fake?: FakeDarajaOptions; routes?: Partial<MpesaRouteDeps> } = {},
): Promise<Harness> {
  const fake = await FakeDaraja.start(options.fake);
  // Daraja checks the Timestamp against its own clock, so the client keeps real time.
  const client = new DarajaClient({
    baseUrl: fake.url,
    consumerKey: fake.consumerKey,
    consumerSecret: fake.consumerSecret,
    shortcode: fake.shortcode,
    passkey: fake.passkey,
    till: options.fake?.till,
    clock: systemClock,
  });
  const mpesa = createMpesaInbox({ ctx, logger: silent, token, ...options.routes });
  const app = createApp({ db: ctx.db, logger: silent, mpesaRoutes: mpesa.routes });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const stkUrl = `${baseUrl}${callbackPaths.stk(token)}`;
  const dispatcher = new StkDispatcher({
    ctx,
    gateway: client,
    logger: silent,
    callbackUrl: stkUrl,
    baseBackoffMs: 10,
  });
  const recovery: RecoveryOptions = {
    ctx,
    gateway: client,
    logger: silent,
    pendingSeconds: 120,
    giveUpSeconds: 900,
  };
  return {
    fake,
    client,
    dispatcher,
    app,
    baseUrl,
    stkUrl,
    recovery,
    mpesa,
    async close() {
      await dispatcher.stop();
      await fake.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let phoneSeq = 0;
/** A phone the abuse limit has not seen. */
export function freshPhone(): string {
  phoneSeq++;
  return `+2547${String(process.pid % 100).padStart(2, "0")}${String(phoneSeq * 997 + Math.floor(Math.random() * 500)).padStart(6, "0")}`;
}

/** A subscriber cut off by dunning, who owes `priceCents`. */
export async function suspendedSubscriber(ctx: BillingContext, clock: FakeClock, priceCents = 300_000) {
  const plan = await createPlan(ctx.db, { priceCents });
  const { customer, subscription } = await activeSubscriber(ctx, plan.id);
  clock.set(new Date(subscription.currentPeriodEnd.getTime() - 4 * DAY));
  await issueRecurringInvoices(ctx, job);
  clock.set(new Date(subscription.currentPeriodEnd.getTime() + DAY + HOUR));
  await suspendOverdue(ctx, job);
  return { customer, subscription, plan };
}

/** Asks for a push, sends it, and waits for the fake's callbacks to have been answered. */
export async function pay(
  h: Harness,
  ctx: BillingContext,
  input: {
    customerId?: number;
    phone: string;
    amountCents: number;
    purpose?: "balance" | "voucher" | "plan_change";
    planId?: number;
    subscriptionId?: number;
  },
  delivery: Delivery,
) {
  h.fake.queue(delivery);
  const asked = await requestPayment(
    ctx,
    { kind: "subscriber", id: input.phone },
    {
      purpose: "balance",
      channel: "test",
      ...input,
    },
  );
  if (!asked.ok) throw new Error(asked.message);
  await h.dispatcher.runOnce();
  if (!delivery.lost && (delivery.delayMs ?? 50) + (delivery.lateByMs ?? 0) < 1000) await h.fake.idle();
  return intent(ctx.db, asked.intentId);
}

/** Sends the prompts waiting, the first answered as `delivery` says, and waits for the fake's callbacks. */
export async function answerPrompt(h: Harness, delivery: Delivery): Promise<void> {
  h.fake.queue(delivery);
  await h.dispatcher.runOnce();
  await h.fake.idle();
}

export async function intent(db: Db, id: number) {
  const [row] = await db.select().from(paymentIntents).where(eq(paymentIntents.id, id));
  return row!;
}

export async function paymentCredits(db: Db, customerId: number): Promise<number[]> {
  const rows = await db
    .select({ amount: ledgerEntries.amountCents })
    .from(ledgerEntries)
    .where(and(eq(ledgerEntries.customerId, customerId), eq(ledgerEntries.kind, "payment")))
    .orderBy(ledgerEntries.id);
  return rows.map((r) => Number(r.amount));
}

export async function subscriptionStatus(db: Db, id: number) {
  const [row] = await db.select().from(subscriptions).where(eq(subscriptions.id, id));
  return row!.status;
}

export async function rows<T extends Record<string, unknown>>(db: Db, query: ReturnType<typeof sql>) {
  const { queryRows } = await import("../../src/db/client.ts");
  return queryRows<T>(db, query);
}
