import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { settleStkResults } from "../../src/billing/intents/settle-batch.ts";
import { recordPaybillPayment } from "../../src/billing/paybill.ts";
import { rejectSignup } from "../../src/billing/signups.ts";
import { FakeClock } from "../../src/clock.ts";
import { type Database, openDatabase, queryRows } from "../../src/db/client.ts";
import { paymentIntents } from "../../src/db/schema/index.ts";
import { eventually } from "../payments/dispatch-support.ts";
import { admin, billingContext, selfSignedUp } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, waitingForLocks } from "../support/locks.ts";
import { inconsistentAccounts, inWaves, none, summary } from "./money-races-support.ts";

/**
 * An admin rejecting a self sign-up while money for it arrives, on two instances sharing one
 * PostgreSQL database. Both take the customer's money lock, so one commits first: a payment first
 * is credited to the live sign-up (the rejection then refuses: the service started, or money is on
 * the account); a rejection first closes the account and the payment waits in the admin's
 * unmatched queue. Either way no shilling is lost or left on a rejected account.
 */
describe.runIf(onRealPostgres())("rejecting a sign-up while it is paid (two instances, PostgreSQL)", () => {
  const PRICE = 100_000;
  const mpesa = { kind: "webhook", id: "mpesa" } as const;
  let database: TestDatabase;
  let second: Database;
  let a: BillingContext;
  let b: BillingContext;
  const clock = new FakeClock("2026-03-02T07:00:00Z");

  beforeAll(async () => {
    database = await createTestDatabase({ maxConnections: 12 });
    second = await openDatabase({ databaseUrl: database.url, dataDir: "", maxConnections: 12 });
    a = billingContext(database.db, clock).ctx;
    b = billingContext(second.db, clock).ctx;
  });
  afterAll(async () => {
    await second?.close();
    await database?.close();
  });

  type Way = "paybill" | "stk";
  interface Applicant {
    customerId: number;
    subscriptionId: number;
    accountNumber: string;
    phone: string;
    way: Way;
    amountCents: number;
    receipt: string;
    /** The prompt the STK payment answers. */
    checkoutId: string;
  }

  let seq = 0;
  /** A self sign-up about to be paid `amountCents` by `way` (a prompt already on the phone for STK). */
  async function applicant(way: Way, amountCents: number): Promise<Applicant> {
    const n = ++seq;
    const phone = `+2547127${String(n).padStart(5, "0")}`;
    const { customer, subscription, accountNumber } = await selfSignedUp(a, {
      phone,
      name: `Applicant ${n}`,
      priceCents: PRICE,
    });
    const row = { customerId: customer.id, subscriptionId: subscription.id };
    const checkoutId = `ws_CO_race_${n}`;
    if (way === "stk") {
      const asked = await requestPayment(
        a,
        { kind: "subscriber", id: phone },
        { phone, purpose: "balance", amountCents, customerId: row.customerId, channel: "test" },
      );
      if (!asked.ok) throw new Error(asked.message);
      await a.db
        .update(paymentIntents)
        .set({ checkoutRequestId: checkoutId })
        .where(eq(paymentIntents.id, asked.intentId));
    }
    return {
      ...row,
      accountNumber,
      phone,
      way,
      amountCents,
      receipt: `RR${String(n).padStart(8, "0")}`,
      checkoutId,
    };
  }

  function pay(ctx: BillingContext, who: Applicant): Promise<unknown> {
    if (who.way === "paybill")
      return recordPaybillPayment(ctx, mpesa, {
        transId: who.receipt,
        billRef: who.accountNumber,
        amountCents: who.amountCents,
      });
    // As the callback route settles callbacks arriving together: in one batch.
    return settleStkResults(ctx, mpesa, [
      {
        checkoutRequestId: who.checkoutId,
        outcome: "paid",
        reason: "The service request is processed successfully.",
        receipt: who.receipt,
        amountCents: who.amountCents,
        phone: who.phone,
        source: "callback",
      },
    ]);
  }

  const reject = (ctx: BillingContext, who: Applicant) =>
    rejectSignup(ctx, admin, { subscriptionId: who.subscriptionId, reason: "area not served" });

  const refusal = (outcome: PromiseSettledResult<unknown>): string | null =>
    outcome.status === "fulfilled"
      ? null
      : String((outcome.reason as { code?: string }).code ?? outcome.reason).slice(0, 160);

  /**
   * Where each applicant's money ended, as a problem when it is anywhere but credited to a live
   * sign-up (with its receipt, and the rejection refused) or waiting in the unmatched queue of a
   * rejected one (nothing on its ledger, and the payer told it was not credited).
   */
  async function misplaced(applicants: Applicant[], refusals: (string | null)[]): Promise<string[]> {
    const rows = await queryRows<{
      customer_id: number;
      customer_status: string;
      payment_status: string | null;
      payment_customer: number | null;
      hold_reason: string | null;
      balance: string;
      payment_entries: number;
      templates: string[] | null;
    }>(
      database.db,
      sql`select c.id as customer_id, c.status as customer_status,
            p.status as payment_status, p.customer_id as payment_customer, p.hold_reason,
            (select coalesce(sum(amount_cents), 0)::text from ledger_entries l where l.customer_id = c.id) as balance,
            (select count(*)::int from ledger_entries l where l.customer_id = c.id and l.kind = 'payment') as payment_entries,
            (select array_agg(m.template order by m.id) from message_outbox m
              where m.recipient = c.phone and m.template like 'payment%') as templates
          from customers c
          left join payments p on p.provider_ref = any(${`{${applicants.map((x) => x.receipt).join(",")}}`}::text[])
            and (p.customer_id = c.id or p.hold_reason like '%' || c.account_number || '%')
          where c.id = any(${`{${applicants.map((x) => x.customerId).join(",")}}`}::int[])`,
    );
    const byCustomer = new Map(rows.map((r) => [Number(r.customer_id), r]));
    const problems: string[] = [];
    applicants.forEach((who, i) => {
      const row = byCustomer.get(who.customerId)!;
      const where = `${who.receipt} (${who.way}, ${who.amountCents}, reject ${refusals[i] ?? "ok"})`;
      const templates = row.templates ?? [];
      if (row.customer_status === "inactive") {
        const held =
          refusals[i] === null &&
          row.payment_status === "unmatched" &&
          row.payment_customer === null &&
          (row.hold_reason ?? "").includes("sign-up was rejected") &&
          Number(row.balance) === 0 &&
          Number(row.payment_entries) === 0 &&
          templates.join() === "payment_not_credited";
        if (!held) problems.push(`${where}: rejected, but ${JSON.stringify(row)}`);
      } else {
        const credited =
          refusals[i] !== null &&
          row.payment_status === "applied" &&
          Number(row.payment_customer) === who.customerId &&
          Number(row.payment_entries) === 1 &&
          templates.join() === "payment_received";
        if (!credited) problems.push(`${where}: not rejected, but ${JSON.stringify(row)}`);
      }
    });
    return problems;
  }

  it("pinned: a payment queued for the lock before the rejection is credited; one queued after it waits for an admin", async () => {
    const cases: { way: Way; amountCents: number; first: "pay" | "reject" }[] = [];
    for (const way of ["paybill", "stk"] as const)
      for (const amountCents of [PRICE, 40_000])
        for (const first of ["pay", "reject"] as const) cases.push({ way, amountCents, first });
    const applicants: Applicant[] = [];
    const refusals: (string | null)[] = [];
    for (const { way, amountCents, first } of cases) {
      const who = await applicant(way, amountCents);
      applicants.push(who);
      // Another session holds the customer's money lock, so the two queue for it in a known order.
      const holding = await holdLock(
        database.url!,
        (tx) => tx`select id from customers where id = ${who.customerId} for no key update`,
      );
      const firstRun = first === "pay" ? pay(a, who) : reject(a, who);
      await eventually(waitingForLocks(database.db, 1), 15_000);
      const secondRun = first === "pay" ? reject(b, who) : pay(b, who);
      await eventually(waitingForLocks(database.db, 2), 15_000);
      await holding.release();
      const [paid, rejected] =
        first === "pay"
          ? await Promise.allSettled([firstRun, secondRun])
          : (await Promise.allSettled([firstRun, secondRun])).reverse();
      expect(refusal(paid!), `${way} ${amountCents} ${first} first`).toBeNull();
      refusals.push(refusal(rejected!));
    }
    expect(refusals).toEqual(
      cases.map(({ amountCents, first }) =>
        first === "reject" ? null : amountCents === PRICE ? "not_pending_signup" : "signup_has_money",
      ),
    );
    expect(summary(await misplaced(applicants, refusals))).toEqual(none);
    expect(
      summary(
        await inconsistentAccounts(
          database.db,
          applicants.map((x) => x.customerId),
        ),
      ),
    ).toEqual(none);
  });

  it("40 rejections racing payments for the same sign-ups: no money lost or left on a rejected account", async () => {
    const applicants = await inWaves(40, 10, (i) =>
      applicant(i % 2 === 0 ? "paybill" : "stk", i % 4 < 2 ? PRICE : 40_000),
    );
    // The admin (instance A) rejects each as its money arrives (instance B), both at once; which
    // is sent first alternates, so each side wins some.
    const outcomes = await inWaves(applicants.length, 10, async (i) => {
      const who = applicants[i]!;
      if (i % 8 < 4) return Promise.allSettled([reject(a, who), pay(b, who)]);
      const paying = pay(b, who);
      return Promise.allSettled([reject(a, who), paying]);
    });
    const refusals = outcomes.map(([rejected]) => refusal(rejected));
    const failedPayments = outcomes.flatMap(([, paid]) => (refusal(paid) ? [refusal(paid)!] : []));
    const unexpected = refusals.filter(
      (r) => r !== null && r !== "not_pending_signup" && r !== "signup_has_money",
    );
    expect({
      failedPayments: summary(failedPayments),
      unexpectedRefusals: summary(unexpected as string[]),
      misplaced: summary(await misplaced(applicants, refusals)),
      inconsistent: summary(
        await inconsistentAccounts(
          database.db,
          applicants.map((x) => x.customerId),
        ),
      ),
    }).toEqual({ failedPayments: none, unexpectedRefusals: none, misplaced: none, inconsistent: none });
  });
});
