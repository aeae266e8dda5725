import { asc, sql } from "drizzle-orm";
import { queryRows } from "../../db/client.ts";
import { textArray } from "../../db/params.ts";
import { paymentIntents } from "../../db/schema/index.ts";
import { closedAccountOutcome } from "../closed-accounts.ts";
import type { Actor, BillingContext } from "../context.ts";
import { applyPaymentsInTx } from "../payments.ts";
import { recordCallbackOutcomes } from "./callbacks.ts";
import type { IntentRow } from "./common.ts";
import {
  callbackFlag,
  callbackKind,
  type SettleOutcome,
  type SettleStatus,
  type StkResult,
  settleStkResult,
} from "./settle.ts";
/**
 * Settles many STK results in one transaction (callbacks arriving together). The common case, a
 * paid callback at the asked amount for an account's balance, is credited set-based through
 * `applyPaymentsInTx`; every other result goes through the same rules as `settleStkResult`, one by
 * one. Outcomes come back in the order of `results`.
 */
export async function settleStkResults(
  ctx: BillingContext,
  actor: Actor,
  results: StkResult[],
): Promise<SettleOutcome[]> {
  if (results.length === 0) return [];
  const outcomes = await ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const checkoutIds = [...new Set(results.map((r) => r.checkoutRequestId))];
    // Locked in id order, so concurrent batches over the same intents queue instead of deadlocking.
    const intents = await tx
      .select()
      .from(paymentIntents)
      .where(sql`${paymentIntents.checkoutRequestId} = any(${textArray(checkoutIds)})`)
      .orderBy(asc(paymentIntents.id))
      .for("update");
    const byCheckout = new Map(intents.map((intent) => [intent.checkoutRequestId, intent]));
    const outcomes: SettleOutcome[] = new Array(results.length);

    const bulk: { index: number; intent: IntentRow; receipt: string; result: StkResult }[] = [];
    // Repeats of a paid callback: answered as duplicates without touching anything but the log.
    const repeats: { index: number; result: StkResult; checkout: string }[] = [];
    // Only the first result for an intent can be credited in bulk: later ones must see what it did.
    const seen = new Set<string>();
    const creditedHere = new Map<string, string>();
    // What is settled after the batch must keep its place: a later result about the same prompt or
    // receipt waits for it (one by one as well).
    const deferredKeys = new Set<string>();
    // Money of these prompts already waiting in the unmatched queue is claimed one by one.
    const queued = await queryRows<{ provider_ref: string; account_reference: string | null }>(
      tx,
      sql`select provider_ref, account_reference from payments
          where provider = 'mpesa' and status = 'unmatched'
            and (provider_ref = any(${textArray(results.flatMap((r) => (r.receipt ? [r.receipt] : [])))})
              or account_reference = any(${textArray(checkoutIds.map((c) => `checkout ${c}`))}))`,
    );
    for (const row of queued) {
      deferredKeys.add(`r:${row.provider_ref}`);
      if (row.account_reference?.startsWith("checkout "))
        deferredKeys.add(`c:${row.account_reference.slice(9)}`);
    }
    const defer = (result: StkResult) => {
      deferredKeys.add(`c:${result.checkoutRequestId}`);
      if (result.receipt) deferredKeys.add(`r:${result.receipt}`);
    };
    for (const [index, result] of results.entries()) {
      const checkout = result.checkoutRequestId;
      const first = !seen.has(checkout);
      seen.add(checkout);
      const intent = byCheckout.get(checkout);
      const waits =
        deferredKeys.has(`c:${checkout}`) || (!!result.receipt && deferredKeys.has(`r:${result.receipt}`));
      if (!intent || result.outcome !== "paid" || waits) {
        defer(result);
        continue;
      }
      // The same receipt again; a different one (a second paid prompt) goes the one-by-one way.
      const alreadyPaid =
        first &&
        intent.paymentId !== null &&
        intent.mpesaReceipt !== null &&
        intent.mpesaReceipt === result.receipt;
      if (alreadyPaid || (!first && creditedHere.get(checkout) === result.receipt)) {
        repeats.push({ index, result, checkout });
        continue;
      }
      const plainCredit =
        first &&
        result.source === "callback" &&
        !!result.receipt &&
        intent.paymentId === null &&
        intent.customerId !== null &&
        intent.purpose === "balance" &&
        result.amountCents === intent.amountCents;
      if (!plainCredit || !result.receipt) {
        defer(result);
        continue;
      }
      creditedHere.set(checkout, result.receipt);
      bulk.push({ index, intent, receipt: result.receipt, result });
    }

    if (bulk.length > 0) {
      const credits = await applyPaymentsInTx(
        tx,
        ctx,
        actor,
        bulk.map(({ intent, receipt }) => ({
          customerId: intent.customerId!,
          method: "mpesa_stk" as const,
          provider: "mpesa",
          providerRef: receipt,
          amountCents: intent.amountCents,
          phone: intent.phone,
          receivedAt: now,
        })),
      );
      const at = now.toISOString();
      const rows = bulk.map(({ intent, receipt, result }, i) => {
        const credit = credits[i]!;
        const status: SettleStatus = credit.heldReason
          ? "queued"
          : credit.duplicate
            ? "duplicate"
            : "credited";
        outcomes[bulk[i]!.index] = {
          status,
          intentId: intent.id,
          paymentId: credit.paymentId,
          intentStatus: "succeeded",
        };
        return {
          id: intent.id,
          payment_id: credit.paymentId,
          receipt,
          result_code: result.providerCode ?? null,
          result_desc: result.reason,
          outcome: credit.heldReason
            ? closedAccountOutcome({ holdReason: credit.heldReason })
            : credit.restoredSubscriptionIds.length
              ? { restoredSubscriptionIds: credit.restoredSubscriptionIds }
              : {},
          checkout: result.checkoutRequestId,
          inbox_id: result.inboxId ?? null,
          body: result.raw ?? null,
          flag: callbackFlag(status),
        };
      });
      // The whole batch travels as one JSON parameter.
      await tx.execute(sql`
        with data as (
          select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as d(id int, payment_id int, receipt text,
            result_code int, result_desc text, outcome jsonb, checkout text, inbox_id int, body jsonb, flag text)
        ),
        settled as (
          update payment_intents p set status = 'succeeded', next_query_at = null, result_code = d.result_code,
            result_desc = d.result_desc, mpesa_receipt = d.receipt, payment_id = d.payment_id, outcome = d.outcome,
            settled_at = ${at}::timestamptz, updated_at = ${at}::timestamptz
          from data d where p.id = d.id
          returning p.id),
        recorded as (
          update mpesa_callbacks m set status = 'processed', flag = d.flag, reference = d.checkout,
            body = coalesce(m.body, d.body), error = null, processed_at = ${at}::timestamptz
          from data d where d.inbox_id is not null and m.id = d.inbox_id
          returning m.id)
        insert into mpesa_callbacks (kind, reference, body, status, flag, received_at, processed_at)
        select 'stk', d.checkout, d.body, 'processed', d.flag, ${at}::timestamptz, ${at}::timestamptz
        from data d where d.inbox_id is null`);
    }

    if (repeats.length > 0) {
      const paidIntents = new Map(
        (
          await tx
            .select({
              checkout: paymentIntents.checkoutRequestId,
              id: paymentIntents.id,
              paymentId: paymentIntents.paymentId,
              status: paymentIntents.status,
            })
            .from(paymentIntents)
            .where(
              sql`${paymentIntents.checkoutRequestId} = any(${textArray([...new Set(repeats.map((r) => r.checkout))])})`,
            )
        ).map((row) => [row.checkout, row]),
      );
      for (const { index, checkout } of repeats) {
        const paid = paidIntents.get(checkout)!;
        outcomes[index] = {
          status: "duplicate",
          intentId: paid.id,
          paymentId: paid.paymentId ?? undefined,
          intentStatus: paid.status,
        };
      }
      await recordCallbackOutcomes(
        tx,
        now,
        repeats.map(({ result }) => ({
          inboxId: result.inboxId,
          kind: callbackKind(result),
          reference: result.checkoutRequestId,
          body: result.raw,
          flag: callbackFlag("duplicate"),
        })),
      );
    }

    return outcomes;
  });
  // Everything else (failures, query results, plan changes, vouchers, orphans, second prompts) is
  // settled after the batch committed, each in its own transaction and in arrival order: in the
  // batch it would lock its customer (or more intents) after the customers the batch holds, out of
  // the lock order, and two batches could deadlock.
  for (let index = 0; index < results.length; index++) {
    if (outcomes[index]) continue;
    outcomes[index] = await settleStkResult(ctx, actor, results[index]!);
  }
  return outcomes;
}
