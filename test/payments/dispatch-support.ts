import { and, eq, isNull, sql } from "drizzle-orm";
import type { BillingContext } from "../../src/billing/context.ts";
import { type PaymentRequest, requestPayment } from "../../src/billing/intents/request.ts";
import { type FakeClock, systemClock } from "../../src/clock.ts";
import { type Db, queryRows } from "../../src/db/client.ts";
import { messageOutbox, paymentIntents } from "../../src/db/schema/index.ts";
import { createLogger, type Logger } from "../../src/logger.ts";
import { DarajaClient, type DarajaOptions, type StkGateway } from "../../src/payments/mpesa/daraja.ts";
import { type DispatcherOptions, StkDispatcher } from "../../src/payments/mpesa/dispatcher.ts";
import { admin } from "../support/billing.ts";
import { type Harness, silent } from "./harness.ts";

/** One parsed pino line. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A logger whose lines the test can read back, parsed and as written. */
export function capturingLogger(): { logger: Logger; lines: LogLine[]; text: () => string } {
  const written: string[] = [];
  const lines: LogLine[] = [];
  const logger = createLogger("debug", {
    write(chunk: string) {
      written.push(chunk);
      lines.push(JSON.parse(chunk) as LogLine);
    },
  });
  return { logger, lines, text: () => written.join("") };
}

/** The real client against the harness's fake, with some settings changed (a wrong passkey, a short timeout). */
export function clientFor(h: Harness, overrides: Partial<DarajaOptions> = {}): DarajaClient {
  return new DarajaClient({
    baseUrl: h.fake.url,
    consumerKey: h.fake.consumerKey,
    consumerSecret: h.fake.consumerSecret,
    shortcode: h.fake.shortcode,
    passkey: h.fake.passkey,
    clock: systemClock,
    ...overrides,
  });
}

/** A dispatcher of its own (the harness's settings unless overridden) posting back to the harness app. */
export function dispatcherFor(
  h: Harness,
  ctx: BillingContext,
  overrides: Partial<DispatcherOptions> = {},
): StkDispatcher {
  return new StkDispatcher({
    ctx,
    gateway: h.client,
    logger: silent,
    callbackUrl: h.stkUrl,
    baseBackoffMs: 10,
    ...overrides,
  });
}

/**
 * A gateway whose push really reaches the fake (the payer is prompted) and then throws, as when the
 * process or its database fails between Daraja's acceptance and storing the checkout id. `until`,
 * when given, holds the failure back (a process that hangs, then dies).
 */
export function failingAfterAccept(client: StkGateway, until?: Promise<void>): StkGateway {
  return {
    async stkPush(request) {
      await client.stkPush(request);
      await until;
      throw new Error("connection to the database lost before the checkout id was stored");
    },
    stkQuery: (id) => client.stkQuery(id),
  };
}

/**
 * Makes the database refuse the next `times` writes of a checkout id to an intent (a trigger, so the
 * dispatcher's own code path fails as it would in an outage). The count lives in a sequence, which
 * a rolled-back statement does not undo. Returns the clean-up, which says how many writes were tried.
 */
export async function refuseCheckoutStores(db: Db, times: number): Promise<() => Promise<number>> {
  await db.execute(sql`create sequence test_store_refusals`);
  await db.execute(
    sql.raw(`create function test_refuse_checkout() returns trigger language plpgsql as $$
      begin
        if nextval('test_store_refusals') <= ${Math.floor(times)} then
          raise exception 'database unavailable (test)';
        end if;
        return new;
      end $$`),
  );
  await db.execute(sql`create trigger test_refuse_checkout before update of checkout_request_id
    on payment_intents for each row when (new.checkout_request_id is not null)
    execute function test_refuse_checkout()`);
  return async () => {
    const [seen] = await queryRows<{ n: number }>(
      db,
      sql`select (case when is_called then last_value else 0 end)::int as n from test_store_refusals`,
    );
    await db.execute(sql`drop trigger test_refuse_checkout on payment_intents`);
    await db.execute(sql`drop function test_refuse_checkout()`);
    await db.execute(sql`drop sequence test_store_refusals`);
    return seen!.n;
  };
}

/** Records a push request and returns its intent id. */
export async function ask(
  ctx: BillingContext,
  input: Omit<PaymentRequest, "channel" | "purpose"> & Partial<PaymentRequest>,
): Promise<number> {
  const asked = await requestPayment(ctx, admin, { purpose: "balance", channel: "test", ...input });
  if (!asked.ok) throw new Error(asked.message);
  return asked.intentId;
}

/** The "payment failed" SMS queued for this payer. */
export async function failureSms(db: Db, phone: string) {
  return db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, "payment_failed")));
}

/** Intents still waiting for a push: each test leaves none, or the next test's dispatcher would send them. */
export async function unsentIntents(db: Db): Promise<number[]> {
  const rows = await db
    .select({ id: paymentIntents.id })
    .from(paymentIntents)
    .where(and(eq(paymentIntents.status, "pending"), isNull(paymentIntents.checkoutRequestId)));
  return rows.map((r) => r.id);
}

/**
 * Runs dispatch rounds, moving the fake clock `stepMs` before each (past any back-off), until `done`
 * holds; fails after `timeoutMs` of real time. The fake Daraja closes prompts in real time, so a round
 * may find the phone still busy: the loop polls, it does not guess a delay.
 */
export async function driveUntil(
  dispatcher: StkDispatcher,
  clock: FakeClock,
  done: () => Promise<boolean>,
  { stepMs = 100, timeoutMs = 5000 } = {},
): Promise<number> {
  const started = Date.now();
  let rounds = 0;
  while (!(await done())) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met after ${rounds} rounds`);
    clock.advance(stepMs);
    await dispatcher.runOnce();
    rounds++;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return rounds;
}

/** Polls `check` until it gives a value, for at most `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000) {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
