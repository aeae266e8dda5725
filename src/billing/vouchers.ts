import { randomInt } from "node:crypto";
import { and, asc, eq, gt, inArray, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { type Language, type PeriodUnit, plans, voucherBatches, vouchers } from "../db/schema/index.ts";
import { planNameIn } from "./accounts.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";
import { recordUncreditedPaymentInTx } from "./payment-rows.ts";
import { periodAt } from "./service-periods.ts";

/** No 0/O, 1/I: codes are read off paper and typed on phones. */
export const VOUCHER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
export const VOUCHER_LENGTH = 8;
export const MAX_BATCH = 10_000;

export function generateVoucherCode(length = VOUCHER_LENGTH): string {
  let code = "";
  for (let i = 0; i < length; i++) code += VOUCHER_ALPHABET[randomInt(VOUCHER_ALPHABET.length)];
  return code;
}

/** Codes are typed by hand: accept any case, spaces and dashes. */
export function normaliseVoucherCode(input: string): string {
  return input.toUpperCase().replace(/[\s-]/g, "");
}

type PlanRow = typeof plans.$inferSelect;

async function hotspotPlan(tx: Executor, planId: number): Promise<PlanRow> {
  const [plan] = await tx.select().from(plans).where(eq(plans.id, planId));
  if (!plan?.active) throw new BillingError("unknown_plan", "That plan does not exist or is retired.");
  if (plan.kind !== "hotspot")
    throw new BillingError("not_hotspot", "Vouchers are sold for hotspot plans only.");
  return plan;
}

/** Inserts `quantity` new codes; the unique index rejects collisions, which are drawn again. */
async function mintCodes(
  tx: Executor,
  values: Omit<typeof vouchers.$inferInsert, "code">,
  quantity: number,
): Promise<(typeof vouchers.$inferSelect)[]> {
  const minted: (typeof vouchers.$inferSelect)[] = [];
  for (let attempt = 0; minted.length < quantity; attempt++) {
    if (attempt > 20) throw new Error("could not draw unique voucher codes");
    const want = quantity - minted.length;
    const rows = await tx
      .insert(vouchers)
      .values(Array.from({ length: want }, () => ({ ...values, code: generateVoucherCode() })))
      .onConflictDoNothing()
      .returning();
    minted.push(...rows);
  }
  return minted;
}

/** A batch of printable codes for a hotspot plan. They go live on the router once sold. */
export async function createVoucherBatch(
  ctx: BillingContext,
  actor: Actor,
  input: { planId: number; quantity: number; routerId?: number | null },
) {
  if (!Number.isInteger(input.quantity) || input.quantity < 1 || input.quantity > MAX_BATCH) {
    throw new BillingError("invalid_quantity", `A batch holds 1 to ${MAX_BATCH} vouchers.`);
  }
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const plan = await hotspotPlan(tx, input.planId);
    const [batch] = await tx
      .insert(voucherBatches)
      .values({
        planId: plan.id,
        routerId: input.routerId ?? null,
        quantity: input.quantity,
        createdBy: actor.id,
        // As the cards print them (voucher-sheet.ts): sold later, the codes keep these.
        periodUnit: plan.periodUnit,
        periodCount: plan.periodCount,
        timeLimitSeconds: plan.timeLimitSeconds,
        dataCapBytes: plan.dataCapBytes,
      })
      .returning();
    const expiresAt = new Date(now.getTime() + ctx.settings.unsoldVoucherDays * 86_400_000);
    const minted = await mintCodes(
      tx,
      {
        batchId: batch!.id,
        planId: plan.id,
        routerId: input.routerId ?? null,
        status: "available",
        expiresAt,
      },
      input.quantity,
    );
    await audit(tx, actor, now, {
      action: "voucher_batch.created",
      entity: "voucher_batch",
      entityId: batch!.id,
      details: { planId: plan.id, quantity: input.quantity },
    });
    return { batch: batch!, codes: minted.map((v) => v.code) };
  });
}

/** What a code's terms are computed from: its plan, or the plan as its printed batch showed it. */
type TermsOf = Pick<PlanRow, "periodUnit" | "periodCount" | "timeLimitSeconds" | "dataCapBytes">;

function validity(plan: TermsOf, now: Date, ctx: BillingContext): Date {
  return periodAt(now, plan, 0, ctx.settings).end;
}

/**
 * The validity a code's card printed, for a query joining `vouchers` to its plan and (left) its
 * batch: what `printedTerms` sells it on.
 */
export const printedValiditySql = {
  periodUnit: sql<PeriodUnit>`coalesce(${voucherBatches.periodUnit}, ${plans.periodUnit})`,
  periodCount: sql<number>`coalesce(${voucherBatches.periodCount}, ${plans.periodCount})`,
};

/** The terms printed on a batch's cards; a batch printed before they were kept: the plan's now. */
function printedTerms(plan: PlanRow, batch: typeof voucherBatches.$inferSelect | null): TermsOf {
  if (!batch?.periodUnit || batch.periodCount === null) return plan;
  return {
    periodUnit: batch.periodUnit,
    periodCount: batch.periodCount,
    timeLimitSeconds: batch.timeLimitSeconds,
    dataCapBytes: batch.dataCapBytes,
  };
}

/**
 * A code's terms as sold: valid until the plan's period from now, connected time on the router the
 * plan's time limit or else that whole period (a month is the calendar month its SMS names), data
 * the plan's cap; a printed code's as its card printed them (`printedTerms`). Kept on the code, so
 * a later edit of the plan does not change what was bought.
 */
function soldTerms(plan: TermsOf, now: Date, ctx: BillingContext) {
  const expiresAt = validity(plan, now, ctx);
  return {
    expiresAt,
    limitUptimeSeconds: plan.timeLimitSeconds ?? Math.round((expiresAt.getTime() - now.getTime()) / 1_000),
    limitBytesTotal: plan.dataCapBytes,
  };
}

/**
 * Sells a voucher to a phone (after an M-Pesa payment): the code goes live on the router and is
 * texted to the buyer.
 */
export async function sellVoucherInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: { planId: number; phone: string; language: Language; routerId?: number | null },
): Promise<{ voucherId: number; code: string; expiresAt: Date }> {
  const now = ctx.clock.now();
  const plan = await hotspotPlan(tx, input.planId);
  const terms = soldTerms(plan, now, ctx);
  const { expiresAt } = terms;
  const [voucher] = await mintCodes(
    tx,
    {
      planId: plan.id,
      routerId: input.routerId ?? null,
      status: "sold",
      soldToPhone: input.phone,
      soldAt: now,
      ...terms,
    },
    1,
  );
  await enqueueProvisioning(tx, now, {
    action: "ensure_voucher",
    voucherId: voucher!.id,
    routerId: voucher!.routerId,
  });
  await enqueueMessage(tx, now, {
    recipient: input.phone,
    language: input.language,
    template: "voucher_code",
    params: {
      code: voucher!.code,
      plan: planNameIn(plan, input.language),
      validity: expiresAt.toISOString(),
    },
    dedupeKey: `voucher:${voucher!.id}`,
  });
  await audit(tx, actor, now, {
    action: "voucher.sold",
    entity: "voucher",
    entityId: voucher!.id,
    details: { planId: plan.id, phone: input.phone },
  });
  return { voucherId: voucher!.id, code: voucher!.code, expiresAt };
}

/** Whether a printed code can be sold now: still available, its unsold date not reached (as `markVouchersSold` selects). */
export const sellableNow = (voucher: { status: string; expiresAt: Date }, now: Date): boolean =>
  voucher.status === "available" && voucher.expiresAt > now;

/** Printed codes named one by one, or every code of a printed batch still unsold. */
export type PrintedVouchers = { codes: string[] } | { batchId: number };

/** At most this many codes are named in one go (a batch can be marked sold whole). */
export const MAX_CODES_SOLD_AT_ONCE = 100;

/**
 * Cash was paid for a number of printed codes, but not that many can be sold now (some were sold,
 * used or expired since they were counted): nothing is sold and no cash recorded, since the cash
 * cannot be split fairly between the codes sold and those that were not.
 */
export class PaidVouchersNoLongerSellable extends BillingError {
  constructor(
    readonly paidFor: number,
    readonly sellable: number,
  ) {
    super(
      "paid_vouchers_not_sellable",
      `Cash was paid for ${paidFor} codes but ${sellable} can be sold now: nothing was sold and no cash recorded.`,
    );
  }
}

/**
 * A reseller sold printed codes: they go live on the router now and expire after the plan's
 * validity. Only codes still available and not past their unsold date are sold; the rest are
 * counted as not available. With cash paid, every code paid for must still be sellable.
 */
export async function markVouchersSold(
  ctx: BillingContext,
  actor: Actor,
  input: PrintedVouchers,
  /**
   * Cash the reseller paid for `forCodes` of them, recorded as money received (for no account).
   * Unless exactly that many can be sold, `PaidVouchersNoLongerSellable` and nothing changes.
   */
  paid?: { amountCents: number; providerRef: string; forCodes: number },
) {
  const codes = "codes" in input ? [...new Set(input.codes.map(normaliseVoucherCode))] : null;
  const batchId = "batchId" in input ? input.batchId : 0;
  if (codes && (codes.length === 0 || codes.length > MAX_CODES_SOLD_AT_ONCE))
    throw new BillingError("invalid_quantity", `Name 1 to ${MAX_CODES_SOLD_AT_ONCE} codes.`);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const rows = await tx
      .select({ voucher: vouchers, plan: plans, batch: voucherBatches })
      .from(vouchers)
      .innerJoin(plans, eq(plans.id, vouchers.planId))
      .leftJoin(voucherBatches, eq(voucherBatches.id, vouchers.batchId))
      .where(
        and(
          codes ? inArray(vouchers.code, codes) : eq(vouchers.batchId, batchId),
          eq(vouchers.status, "available"),
          // Past its unsold date a code is the expiry job's, even before that job has run.
          gt(vouchers.expiresAt, now),
        ),
      )
      // Locked in id order, the order of every writer of several vouchers (expireVouchersInTx).
      .orderBy(asc(vouchers.id))
      // `no key update`: what a status change needs; key-share locks (a provisioning row naming the
      // voucher being inserted) need not wait for it.
      .for("no key update", { of: vouchers });
    // Counted on the locked rows: a sale committed meanwhile elsewhere is not among them, and none
    // can happen until this transaction ends.
    if (paid && rows.length !== paid.forCodes)
      throw new PaidVouchersNoLongerSellable(paid.forCodes, rows.length);
    for (const { voucher, plan, batch } of rows) {
      await tx
        .update(vouchers)
        .set({ status: "sold", soldAt: now, ...soldTerms(printedTerms(plan, batch), now, ctx) })
        .where(eq(vouchers.id, voucher.id));
      await enqueueProvisioning(tx, now, {
        action: "ensure_voucher",
        voucherId: voucher.id,
        routerId: voucher.routerId,
      });
    }
    const paymentId =
      paid && rows.length > 0
        ? await recordUncreditedPaymentInTx(
            tx,
            now,
            {
              method: "cash",
              provider: "cash",
              providerRef: paid.providerRef,
              amountCents: paid.amountCents,
              // The vouchers by number, not by code: a code is internet anyone can use, and this
              // reference goes into the payments export.
              accountReference: codes
                ? `vouchers ${rows.map((r) => `#${r.voucher.id}`).join(" ")}`.slice(0, 200)
                : `voucher batch ${batchId}`,
            },
            "applied",
          )
        : null;
    // A whole batch is audited as the batch (its ids could outgrow the indexed entity id).
    await audit(
      tx,
      actor,
      now,
      codes
        ? {
            action: "voucher.marked_sold",
            entity: "voucher",
            entityId: rows.map((r) => r.voucher.id).join(","),
            details: { requested: codes.length, sold: rows.length, paymentId },
          }
        : {
            action: "voucher.marked_sold",
            entity: "voucher_batch",
            entityId: batchId,
            details: { sold: rows.length, paymentId },
          },
    );
    return { sold: rows.length, notAvailable: codes ? codes.length - rows.length : 0, paymentId };
  });
}

/** First use of a sold code (reported by the router or by an admin). */
export async function redeemVoucher(ctx: BillingContext, actor: Actor, input: { code: string }) {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [updated] = await tx
      .update(vouchers)
      .set({ status: "redeemed", redeemedAt: now })
      .where(and(eq(vouchers.code, normaliseVoucherCode(input.code)), eq(vouchers.status, "sold")))
      .returning();
    if (!updated) throw new BillingError("not_redeemable", "That code is not a sold, unused voucher.");
    await audit(tx, actor, now, { action: "voucher.redeemed", entity: "voucher", entityId: updated.id });
    return updated;
  });
}

/** Expires vouchers past their date; live ones are removed from the router. */
export async function expireVouchersInTx(tx: Executor, ctx: BillingContext, _actor: Actor) {
  const now = ctx.clock.now();
  // Locked in id order first, the order of every writer of several vouchers (markVouchersSold),
  // and materialized so the locking runs once whatever the plan.
  const expired = await queryRows<{ id: number; router_id: number | null; sold_at: Date | null }>(
    tx,
    sql`with due as materialized (
          select id from vouchers
          where status in ('available', 'sold', 'redeemed') and expires_at <= ${now.toISOString()}::timestamptz
          order by id
          for no key update
        )
        update vouchers v set status = 'expired' from due where v.id = due.id
        returning v.id, v.router_id, v.sold_at`,
  );
  const live = expired.filter((v) => v.sold_at !== null);
  for (const voucher of live) {
    await enqueueProvisioning(tx, now, {
      action: "remove_voucher",
      voucherId: Number(voucher.id),
      routerId: voucher.router_id === null ? null : Number(voucher.router_id),
    });
  }
  return { expired: expired.length, removedFromRouters: live.length };
}

export function expireVouchers(ctx: BillingContext, actor: Actor) {
  return ctx.db.transaction((tx) => expireVouchersInTx(tx, ctx, actor));
}
