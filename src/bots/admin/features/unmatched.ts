import { Composer, type Context } from "grammy";
import { formatKes } from "../../../billing/money.ts";
import { assignUnmatchedPayment, listUnmatchedPayments } from "../../../billing/unmatched.ts";
import { counted } from "../../../lib/plural.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount } from "../parse.ts";
import { paymentByReceipt, unmatchedByReceipt } from "../queries.ts";
import { adminActor } from "../roles.ts";

/** `/unmatched` and `/assign`: paybill payments that matched no account. */
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
          `  • ${p.providerRef} ${formatKes(p.amountCents)} ${formatDateTime("en", p.receivedAt, timezone)}${p.accountReference ? ` ref "${p.accountReference}"` : ""}${p.payerName ? ` from ${p.payerName}` : ""}${p.holdReason ? ` — ${p.holdReason}` : ""}`,
      );
    await reply(
      ctx,
      [
        `${counted(rows.length, "unmatched payment")}:`,
        ...shown,
        ...(rows.length > 30 ? [`…and ${rows.length - 30} more.`] : []),
        "Place one with /assign <receipt> <account>.",
      ].join("\n"),
    );
  });
  kit.command(unmatched, "assign", async (ctx, admin, args) => {
    const receipt = args[0];
    if (!receipt || !/^[A-Za-z0-9_-]{4,40}$/.test(receipt))
      return void (await reply(
        ctx,
        usage(
          "assign",
          receipt ? `"${receipt}" is not a receipt number.` : "Say the receipt number and the account.",
        ),
      ));
    const account = parseAccount(args[1]);
    if (!account.ok) return void (await reply(ctx, usage("assign", account.error)));
    if (args.length > 2) return void (await reply(ctx, usage("assign", "Too many words.")));
    const waiting = await unmatchedByReceipt(db, receipt);
    if (waiting.length === 0) {
      const known = await paymentByReceipt(db, receipt);
      return void (await reply(
        ctx,
        known
          ? `${receipt} is not waiting to be assigned (already credited).`
          : `No payment with receipt ${receipt}. /unmatched lists them.`,
      ));
    }
    if (waiting.length > 1)
      return void (await reply(ctx, `More than one payment has receipt ${receipt}: place it from the CLI.`));
    const payment = waiting[0]!;
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
  return unmatched;
}
