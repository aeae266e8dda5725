import { eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { RECEIPT_PATTERN, settlePushFromStatement } from "../../../billing/intents/statement.ts";
import { formatKes } from "../../../billing/money.ts";
import { MAX_ROW_ID, parseRowId } from "../../../db/params.ts";
import { customers, paymentIntents } from "../../../db/schema/index.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor } from "../roles.ts";

/**
 * `/prompt_paid <#prompt> <receipt>`: a payment prompt M-Pesa never said the result of (the admin
 * chat is told of each, unresolved-push-alerts.ts), found paid on M-Pesa's statement, is credited
 * as its callback would have credited it, under that receipt (src/billing/intents/statement.ts).
 */

type PromptPaidAction = FeatureAction & {
  feature: "prompt_paid";
  intentId: number;
  receipt: string;
  amountCents: number;
  /** Whom it pays for: an account number, or a voucher sale. */
  forWhat: string;
};

const what = (a: PromptPaidAction) =>
  `record payment prompt #${a.intentId} (${formatKes(a.amountCents)} ${a.forWhat}) as paid with M-Pesa receipt ${a.receipt}`;

confirmable("prompt_paid", {
  command: "prompt_paid",
  describe: (a) => what(a as PromptPaidAction),
  async run(ctx, admin, a) {
    const action = a as PromptPaidAction;
    const outcome = await settlePushFromStatement(ctx, adminActor(admin.telegramId), action);
    const done = `payment prompt #${action.intentId}: ${action.receipt} (${formatKes(action.amountCents)})`;
    switch (outcome.status) {
      case "credited":
        return `✅ Paid, ${done} credited ${action.forWhat}; the payer is told as after any payment.`;
      case "queued":
        return `⏸ Paid, ${done} recorded and held in /unmatched (the account cannot take it): place or refund it there.`;
      default:
        return `✅ Paid, ${done}: this money was recorded already, nothing more was credited.`;
    }
  },
});

export function promptPaidFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db, timezone } = kit;
  const composer = new Composer<Context>();
  kit.command(composer, "prompt_paid", async (ctx, admin, args) => {
    if (args.length !== 2)
      return void (await reply(
        ctx,
        usage("prompt_paid", "Say the prompt's number, as the alert names it, and the M-Pesa receipt."),
      ));
    const id = parseRowId(args[0]!.replace(/^#/, ""));
    if (id === null)
      return void (await reply(
        ctx,
        `${args[0]} is not a payment prompt's number (they run from 1 to ${MAX_ROW_ID}).`,
      ));
    const receipt = args[1]!.toUpperCase();
    if (!RECEIPT_PATTERN.test(receipt))
      return void (await reply(ctx, `"${args[1]}" is not an M-Pesa receipt number (like TLK4ABC12Q).`));
    const [prompt] = await db
      .select({ intent: paymentIntents, accountNumber: customers.accountNumber })
      .from(paymentIntents)
      .leftJoin(customers, eq(customers.id, paymentIntents.customerId))
      .where(eq(paymentIntents.id, id));
    if (!prompt) return void (await reply(ctx, `No payment prompt #${id}.`));
    const { intent } = prompt;
    if (intent.status !== "timed_out")
      return void (await reply(
        ctx,
        `Payment prompt #${id} is ${intent.status}: M-Pesa gave its result, so there is nothing to record.`,
      ));
    const action: PromptPaidAction = {
      kind: "feature",
      feature: "prompt_paid",
      intentId: id,
      receipt,
      amountCents: intent.amountCents,
      forWhat: intent.purpose === "voucher" ? "for a voucher" : `to ${prompt.accountNumber ?? "no account"}`,
    };
    const sent = intent.sentAt ? `, sent ${formatDateTime("en", intent.sentAt, timezone)}` : "";
    await kit.ask(
      ctx,
      admin,
      action,
      `Payment prompt #${id}: ${formatKes(intent.amountCents)} from ${intent.phone}${sent}. Record it as paid with receipt ${receipt} and credit it ${action.forWhat}? Only if M-Pesa's statement shows this receipt for this amount.`,
    );
  });
  return composer;
}
