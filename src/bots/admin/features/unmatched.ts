import { eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { sellVoucherForHeldPayment } from "../../../billing/held-voucher-sale.ts";
import { formatKes } from "../../../billing/money.ts";
import {
  assignUnmatchedPayment,
  listUnmatchedPayments,
  markUnmatchedRefunded,
} from "../../../billing/unmatched.ts";
import type { Executor } from "../../../db/client.ts";
import { MAX_ROW_ID, parseRowId } from "../../../db/params.ts";
import { payments, plans } from "../../../db/schema/index.ts";
import { displayPhone } from "../../../lib/phone.ts";
import { counted } from "../../../lib/plural.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount, parseNote } from "../parse.ts";
import { paymentByReceipt, unmatchedByReceipt } from "../queries.ts";
import { adminActor } from "../roles.ts";

type Payment = typeof payments.$inferSelect;

/**
 * The waiting payment a word names: its receipt (a push held without one shows `stk:<checkout id>`),
 * or `#<id>` as `/unmatched` lists it, which also tells apart two payments with one receipt.
 */
async function waitingPayment(db: Executor, word: string | undefined): Promise<Payment | string> {
  if (!word) return "Say the receipt number (or the #number /unmatched shows).";
  const byId = /^#(\d+)$/.exec(word);
  if (byId) {
    const id = parseRowId(byId[1]!);
    if (id === null)
      return `${word} is not a payment number (they run from 1 to ${MAX_ROW_ID}). /unmatched lists them.`;
    const [row] = await db.select().from(payments).where(eq(payments.id, id));
    if (!row) return `No payment ${word}. /unmatched lists them.`;
    return row.status === "unmatched" ? row : `${word} is not waiting to be assigned (${row.status}).`;
  }
  if (!/^[A-Za-z0-9_:.-]{4,80}$/.test(word)) return `"${word}" is not a receipt number.`;
  const waiting = await unmatchedByReceipt(db, word);
  if (waiting.length === 1) return waiting[0]!;
  if (waiting.length > 1)
    return `More than one payment has receipt ${word}: name one by its number, ${waiting.map((p) => `#${p.id}`).join(" or ")}.`;
  const known = await paymentByReceipt(db, word);
  return known
    ? `${word} is not waiting to be assigned (${known.status === "applied" ? "already credited" : known.status}).`
    : `No payment with receipt ${word}. /unmatched lists them.`;
}

type RefundAction = FeatureAction & {
  feature: "refunded";
  paymentId: number;
  receipt: string;
  amountCents: number;
  reason: string;
};

confirmable("refunded", {
  command: "refunded",
  describe: (a) => {
    const action = a as RefundAction;
    return `record that ${action.receipt} (${formatKes(action.amountCents)}) was given back to the payer (reason: ${action.reason}); it leaves the queue and is never credited`;
  },
  async run(ctx, admin, a) {
    const action = a as RefundAction;
    await markUnmatchedRefunded(ctx, adminActor(admin.telegramId), action);
    return `✅ ${action.receipt} (${formatKes(action.amountCents)}) recorded as refunded; it has left the unmatched queue.`;
  },
});

/** `/unmatched`, `/assign` and `/refunded`: payments that matched no account. */
export function unmatchedFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db, timezone } = kit;
  const unmatched = new Composer<Context>();
  kit.command(unmatched, "unmatched", async (ctx) => {
    const rows = await listUnmatchedPayments(db);
    if (rows.length === 0) return void (await reply(ctx, "No unmatched payments."));
    const shown = rows
      .slice(0, 30)
      .map(
        (p) =>
          `  • #${p.id} ${p.providerRef} ${formatKes(p.amountCents)} ${formatDateTime("en", p.receivedAt, timezone)}${p.accountReference ? ` ref "${p.accountReference}"` : ""}${p.payerName ? ` from ${p.payerName}` : ""}${p.holdReason ? ` — ${p.holdReason}` : ""}`,
      );
    await reply(
      ctx,
      [
        `${counted(rows.length, "unmatched payment")}:`,
        ...shown,
        ...(rows.length > 30 ? [`…and ${rows.length - 30} more.`] : []),
        "Place one with /assign <receipt> <account>, or record its money given back with /refunded <receipt> <reason>; a voucher bought but not delivered: /sell_voucher <receipt> <plan>.",
      ].join("\n"),
    );
  });
  kit.command(unmatched, "assign", async (ctx, admin, args) => {
    const account = parseAccount(args[1]);
    if (args[0] === undefined || !account.ok)
      return void (await reply(
        ctx,
        usage(
          "assign",
          args[0] === undefined ? "Say the receipt number and the account." : account.ok ? "" : account.error,
        ),
      ));
    if (args.length > 2) return void (await reply(ctx, usage("assign", "Too many words.")));
    const payment = await waitingPayment(db, args[0]);
    if (typeof payment === "string") return void (await reply(ctx, payment));
    await kit.answerBilling(ctx, async (tx, inTxCtx, now) => {
      const result = await assignUnmatchedPayment(inTxCtx, adminActor(admin.telegramId), {
        paymentId: payment.id,
        accountNumber: account.value,
      });
      const restored = result.restoredSubscriptionIds.length > 0 ? " Service restored." : "";
      await kit.say(
        tx,
        now,
        ctx.chat!.id,
        `✅ ${payment.providerRef} (${formatKes(payment.amountCents)}) credited to ${account.value.toUpperCase()}. Balance now ${formatKes(result.balanceCents)}.${restored}`,
      );
    });
  });
  kit.command(unmatched, "sell_voucher", async (ctx, admin, args) => {
    if (args.length !== 2)
      return void (await reply(
        ctx,
        usage(
          "sell_voucher",
          "Say the receipt number (or the #number /unmatched shows) and the plan's code.",
        ),
      ));
    const payment = await waitingPayment(db, args[0]);
    if (typeof payment === "string") return void (await reply(ctx, payment));
    const [plan] = await db.select().from(plans).where(eq(plans.code, args[1]!.toLowerCase()));
    if (!plan) return void (await reply(ctx, `No plan ${args[1]}. /plans lists them.`));
    await kit.answerBilling(ctx, async (tx, inTxCtx, now) => {
      const sold = await sellVoucherForHeldPayment(inTxCtx, adminActor(admin.telegramId), {
        paymentId: payment.id,
        planId: plan.id,
      });
      await kit.say(
        tx,
        now,
        ctx.chat!.id,
        `✅ ${payment.providerRef} (${formatKes(sold.amountCents)}): a ${sold.planName} voucher is texted to ${displayPhone(sold.phone)}, valid until ${formatDateTime("en", sold.expiresAt, timezone)}. The payment has left the queue.`,
      );
    });
  });
  kit.command(unmatched, "refunded", async (ctx, admin, args) => {
    const reason = parseNote(args.slice(1));
    if (args[0] === undefined || !reason.ok || !reason.value)
      return void (await reply(
        ctx,
        usage(
          "refunded",
          args[0] === undefined
            ? "Say the receipt number and why."
            : reason.ok
              ? "Say why: the reason goes into the audit log."
              : reason.error,
        ),
      ));
    const payment = await waitingPayment(db, args[0]);
    if (typeof payment === "string") return void (await reply(ctx, payment));
    const action: RefundAction = {
      kind: "feature",
      feature: "refunded",
      paymentId: payment.id,
      receipt: payment.providerRef,
      amountCents: payment.amountCents,
      reason: reason.value,
    };
    await kit.ask(
      ctx,
      admin,
      action,
      `Record that ${payment.providerRef} (${formatKes(payment.amountCents)}, received ${formatDateTime("en", payment.receivedAt, timezone)}${payment.payerName ? ` from ${payment.payerName}` : ""}) was given back to the payer? It leaves the queue and is never credited.`,
    );
  });
  return unmatched;
}
