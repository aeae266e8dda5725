import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { adjustBalance } from "../../../billing/adjust.ts";
import { balanceOf } from "../../../billing/ledger.ts";
import { formatKes } from "../../../billing/money.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount, parseAmount, parseNote } from "../parse.ts";
import { adminActor } from "../roles.ts";
import { balanceText, capitalised } from "../texts.ts";

/**
 * `/adjust <account> <+amount|-amount> <reason…>`: corrects a balance (src/billing/adjust.ts), asked
 * first. The sign is required, so a correction never goes the wrong way by default: `+` credits the
 * customer, `-` charges them.
 */

type AdjustAction = FeatureAction & {
  feature: "adjust";
  customerId: number;
  accountNumber: string;
  amountCents: number;
  reason: string;
};

const what = (action: AdjustAction) =>
  action.amountCents > 0
    ? `credit ${action.accountNumber} with ${formatKes(action.amountCents)}`
    : `charge ${action.accountNumber} ${formatKes(-action.amountCents)}`;

confirmable("adjust", {
  command: "adjust",
  describe: (a) => `${what(a as AdjustAction)} (reason: ${(a as AdjustAction).reason})`,
  async run(ctx, admin, a) {
    const action = a as AdjustAction;
    const result = await adjustBalance(ctx, adminActor(admin.telegramId), action);
    const restored = result.restoredSubscriptionIds.length > 0 ? " Service restored." : "";
    return `✅ ${action.amountCents > 0 ? "Credited" : "Charged"} ${formatKes(Math.abs(action.amountCents))}: ${action.accountNumber}'s balance is now ${balanceText(result.balanceCents)}.${restored}`;
  },
});

export function adjustFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const composer = new Composer<Context>();
  kit.command(composer, "adjust", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("adjust", account.error)));
    const signed = /^([+-])(.*)$/.exec(args[1] ?? "");
    if (!signed)
      return void (await reply(
        ctx,
        usage("adjust", "Say + to credit the customer or - to charge them, e.g. -360 or +500."),
      ));
    const amount = parseAmount(signed[2], "one correction");
    if (!amount.ok) return void (await reply(ctx, usage("adjust", amount.error)));
    const reason = parseNote(args.slice(2));
    if (!reason.ok || !reason.value)
      return void (await reply(
        ctx,
        usage("adjust", reason.ok ? "Say why: the reason goes into the audit log." : reason.error),
      ));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const action: AdjustAction = {
      kind: "feature",
      feature: "adjust",
      customerId: customer.id,
      accountNumber: customer.accountNumber,
      amountCents: signed[1] === "-" ? -amount.value : amount.value,
      reason: reason.value,
    };
    const balance = await balanceOf(db, customer.id);
    await kit.ask(
      ctx,
      admin,
      action,
      `${customer.name}: balance ${balanceText(balance)}. ${capitalised(what(action))} (reason: ${action.reason})?${action.amountCents < 0 ? " The charge is due at once and paid from what the bills for service leave over; service waiting for a payment starts only once it is paid too." : ""}`,
    );
  });
  return composer;
}
