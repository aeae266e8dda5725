import { eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { BillingError } from "../../../billing/context.ts";
import { balanceOf } from "../../../billing/ledger.ts";
import { formatKes } from "../../../billing/money.ts";
import { resubscribe } from "../../../billing/resubscribe.ts";
import { plans } from "../../../db/schema/index.ts";
import { findRouterByReference } from "../../../network/health.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount } from "../parse.ts";
import { currentSubscription } from "../queries.ts";
import { adminActor } from "../roles.ts";
import { balanceText } from "../texts.ts";

/**
 * `/resubscribe <account> <plan code> [router]`: a customer whose subscription was cancelled (or
 * whose sign-up was rejected) comes back on the same account (src/billing/resubscribe.ts), asked
 * first. Like any new subscriber they are served once the first period is paid.
 */

type ResubscribeAction = FeatureAction & {
  feature: "resubscribe";
  customerId: number;
  accountNumber: string;
  planId: number;
  planCode: string;
  routerId: number | null;
  routerName: string | null;
  /** The first period's price the question named: billed only at it (unset: asked before it was kept). */
  priceCents?: number;
};

const what = (a: ResubscribeAction) =>
  `start a new ${a.planCode} subscription for ${a.accountNumber}${a.routerName ? ` on router ${a.routerName}` : ", no router yet"}`;

confirmable("resubscribe", {
  command: "resubscribe",
  describe: (a) => what(a as ResubscribeAction),
  async run(ctx, admin, a) {
    const action = a as ResubscribeAction;
    const { subscription, invoice, started, owedCents } = await resubscribe(
      ctx,
      adminActor(admin.telegramId),
      action,
    );
    // The plan's price changed since the question: thrown in the claim's transaction, nothing stays.
    if (action.priceCents !== undefined && invoice.amountCents !== action.priceCents)
      throw new BillingError(
        "price_changed",
        `The price of ${action.planCode} changed since you asked (now ${formatKes(invoice.amountCents)}), so nothing was done. Send /resubscribe again.`,
      );
    const state = started
      ? "the first period is paid from the account's credit: service starts now"
      : owedCents > invoice.amountCents
        ? `${formatKes(owedCents)} to pay, older bills first, then the first period (service starts once all is paid)`
        : owedCents < invoice.amountCents
          ? `${formatKes(owedCents)} still to pay for the first period, the rest paid from credit (service starts with it)`
          : `${formatKes(owedCents)} to pay for the first period (service starts with it)`;
    return `✅ ${action.accountNumber} is subscribed again to ${action.planCode} (router login ${subscription.networkUsername}): ${state}.`;
  },
});

export function resubscribeFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const composer = new Composer<Context>();
  kit.command(composer, "resubscribe", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("resubscribe", account.error)));
    if (!args[1]) return void (await reply(ctx, usage("resubscribe", "Say the plan's code (see /plans).")));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const live = await currentSubscription(db, customer.id);
    if (live)
      return void (await reply(
        ctx,
        `${customer.accountNumber} already has a subscription (${live.status}): /plan changes its plan.`,
      ));
    const [plan] = await db.select().from(plans).where(eq(plans.code, args[1].toLowerCase()));
    if (!plan?.active) return void (await reply(ctx, `No plan ${args[1]} on sale. /plans lists them.`));
    const routerRef = args.slice(2).join(" ");
    const router = routerRef ? await findRouterByReference(db, routerRef) : null;
    if (routerRef && !router)
      return void (await reply(ctx, `No router "${routerRef}". /routers lists them.`));
    const action: ResubscribeAction = {
      kind: "feature",
      feature: "resubscribe",
      customerId: customer.id,
      accountNumber: customer.accountNumber,
      planId: plan.id,
      planCode: plan.code,
      routerId: router?.id ?? null,
      routerName: router?.name ?? null,
      priceCents: plan.priceCents,
    };
    const balance = await balanceOf(db, customer.id);
    const sentence = what(action);
    await kit.ask(
      ctx,
      admin,
      action,
      `${customer.name} (no subscription, balance ${balanceText(balance)}): ${sentence}? The first period, ${formatKes(plan.priceCents)}, is billed now.`,
    );
  });
  return composer;
}
