import { eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { cancelSubscription } from "../../../billing/cancel-subscription.ts";
import { BillingError } from "../../../billing/context.ts";
import { extendService } from "../../../billing/extend.ts";
import { formatKes } from "../../../billing/money.ts";
import { changePlanInTx } from "../../../billing/plan-change.ts";
import { quotePlanChange } from "../../../billing/plan-change-quote.ts";
import { plans } from "../../../db/schema/index.ts";
import { counted } from "../../../lib/plural.ts";
import { formatDate } from "../../../messaging/render.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount, parseNote } from "../parse.ts";
import { currentSubscription } from "../queries.ts";
import { adminActor } from "../roles.ts";

/**
 * `/extend`, `/plan`, `/cancel`: each quoted and asked first with the once-only button
 * (confirmations.ts), then run through its billing use-case in the claim's transaction.
 */

export const MAX_EXTEND_DAYS = 90;

interface Target {
  subscriptionId: number;
  accountNumber: string;
}

type ExtendAction = FeatureAction & Target & { feature: "extend"; days: number; reason: string };
type PlanAction = FeatureAction &
  Target & {
    feature: "plan";
    planId: number;
    planCode: string;
    quoted: string;
    /**
     * The plans as quoted: the change is made only from that plan, at those prices. Optional: a
     * question asked before these were kept is confirmed as it was then.
     */
    fromPlanId?: number;
    fromPriceCents?: number;
    toPriceCents?: number;
  };
type CancelAction = FeatureAction & Target & { feature: "cancel"; reason: string };

confirmable("extend", {
  command: "extend",
  describe: (a) => {
    const action = a as ExtendAction;
    return `give ${action.accountNumber} ${counted(action.days, "free day")} of service (reason: ${action.reason})`;
  },
  async run(ctx, admin, a) {
    const action = a as ExtendAction;
    const { subscription, restored } = await extendService(ctx, adminActor(admin.telegramId), {
      subscriptionId: action.subscriptionId,
      days: action.days,
      reason: action.reason,
    });
    const until = formatDate("en", subscription.currentPeriodEnd, ctx.settings.timezone);
    const state = restored
      ? " Service restored: the router is being told."
      : subscription.status === "suspended"
        ? ` Still suspended (${subscription.suspendedReason}): ${subscription.suspendedReason === "dunning" ? "an earlier bill is still overdue" : "use /resume"}.`
        : "";
    return `✅ Extended ${action.accountNumber} by ${counted(action.days, "day")}: paid until ${until}.${state}`;
  },
});

confirmable("plan", {
  command: "plan",
  describe: (a) => {
    const action = a as PlanAction;
    return `move ${action.accountNumber} to plan ${action.planCode} (${action.quoted})`;
  },
  async run(ctx, admin, a) {
    const action = a as PlanAction;
    const quote = await changePlanInTx(ctx.db, ctx, adminActor(admin.telegramId), {
      subscriptionId: action.subscriptionId,
      planId: action.planId,
    });
    // A plan or price changed since the question (another admin, a plan edit): what was agreed to
    // is gone. Thrown in the claim's transaction, so nothing of the change stays.
    if (
      action.fromPlanId !== undefined &&
      (quote.fromPlan.id !== action.fromPlanId ||
        quote.fromPlan.priceCents !== action.fromPriceCents ||
        quote.toPlan.priceCents !== action.toPriceCents)
    )
      throw new BillingError(
        "quote_changed",
        `${action.accountNumber}'s plan or a price changed since you asked, so nothing was changed. Send /plan again for a new quote.`,
      );
    return `✅ ${action.accountNumber}: ${quoteText(quote, ctx.settings.timezone, true)}`;
  },
});

confirmable("cancel", {
  command: "cancel",
  describe: (a) => {
    const action = a as CancelAction;
    return `cancel ${action.accountNumber}'s subscription and remove its router account (reason: ${action.reason})`;
  },
  async run(ctx, admin, a) {
    const action = a as CancelAction;
    await cancelSubscription(ctx, adminActor(admin.telegramId), {
      subscriptionId: action.subscriptionId,
      reason: action.reason,
    });
    return `✅ Cancelled ${action.accountNumber}: the router account is being removed.`;
  },
});

function quoteText(
  quote: Awaited<ReturnType<typeof quotePlanChange>>,
  timezone: string,
  done = false,
): string {
  const to = `${quote.toPlan.name} (${formatKes(quote.toPlan.priceCents)})`;
  if (quote.kind === "keep")
    return `stays on ${to}; the plan change waiting for the period end ${done ? "is" : "will be"} cancelled`;
  if (quote.kind === "upgrade")
    return `${done ? "moved" : "moves"} to ${to} now; ${formatKes(quote.chargeCents)} charged for the rest of the period`;
  if (quote.immediate)
    return `${done ? "moved" : "moves"} to ${to} now; ${quote.creditCents > 0 ? `${formatKes(quote.creditCents)} credited for the rest of the period` : "nothing charged or credited"}`;
  if (quote.withNextPayment)
    return `${done ? "will move" : "moves"} to ${to} with the next period, once its bill is paid (the period ended ${formatDate("en", quote.effectiveAt, timezone)}); nothing charged now`;
  return `${done ? "will move" : "moves"} to ${to} from ${formatDate("en", quote.effectiveAt, timezone)} (the period end); nothing charged now`;
}

export function subscriptionsFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const composer = new Composer<Context>();

  /** The account's current subscription, or an answer saying why there is none. */
  async function target(ctx: Context, name: "extend" | "plan" | "cancel", word: string | undefined) {
    const account = parseAccount(word);
    if (!account.ok) return void (await reply(ctx, usage(name, account.error)));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const subscription = await currentSubscription(db, customer.id);
    if (!subscription) return void (await reply(ctx, `${customer.accountNumber} has no subscription.`));
    return { customer, subscription };
  }

  kit.command(composer, "extend", async (ctx, admin, args) => {
    const daysWord = args[1];
    if (daysWord === undefined || !/^\d{1,3}$/.test(daysWord) || +daysWord < 1 || +daysWord > MAX_EXTEND_DAYS)
      return void (await reply(
        ctx,
        usage(
          "extend",
          args[0] === undefined
            ? "Say the account number, e.g. TD00001."
            : `Say the days as a whole number from 1 to ${MAX_EXTEND_DAYS}.`,
        ),
      ));
    const reason = parseNote(args.slice(2));
    if (!reason.ok) return void (await reply(ctx, usage("extend", reason.error)));
    const found = await target(ctx, "extend", args[0]);
    if (!found) return;
    const { customer, subscription } = found;
    if (subscription.status === "pending")
      return void (await reply(
        ctx,
        `${customer.accountNumber} has not started yet (waiting for the first payment): nothing to extend.`,
      ));
    const action: ExtendAction = {
      kind: "feature",
      feature: "extend",
      subscriptionId: subscription.id,
      accountNumber: customer.accountNumber,
      days: Number(daysWord),
      reason: reason.value || "extended from the admin chat",
    };
    const until = formatDate("en", subscription.currentPeriodEnd, kit.timezone);
    await kit.ask(
      ctx,
      admin,
      action,
      `${customer.name}: paid until ${until} (${subscription.status}). Give ${counted(action.days, "free day")} of service, without charge?`,
    );
  });

  kit.command(composer, "plan", async (ctx, admin, args) => {
    if (args[1] === undefined)
      return void (await reply(
        ctx,
        usage("plan", args[0] ? "Say the plan's code (see /plans)." : undefined),
      ));
    const found = await target(ctx, "plan", args[0]);
    if (!found) return;
    const { customer, subscription } = found;
    const [plan] = await db.select().from(plans).where(eq(plans.code, args[1].toLowerCase()));
    if (!plan) return void (await reply(ctx, `No plan ${args[1]}. /plans lists them.`));
    let quote: Awaited<ReturnType<typeof quotePlanChange>>;
    try {
      quote = await quotePlanChange(db, kit.billing, { subscriptionId: subscription.id, planId: plan.id });
    } catch (error) {
      if (!(error instanceof BillingError)) throw error;
      return void (await reply(ctx, `${customer.accountNumber}: ${error.message}`));
    }
    if (quote.kind === "same")
      return void (await reply(ctx, `${customer.accountNumber} is already on ${plan.code}.`));
    const quoted = quoteText(quote, kit.timezone);
    const action: PlanAction = {
      kind: "feature",
      feature: "plan",
      subscriptionId: subscription.id,
      accountNumber: customer.accountNumber,
      planId: plan.id,
      planCode: plan.code,
      quoted,
      fromPlanId: quote.fromPlan.id,
      fromPriceCents: quote.fromPlan.priceCents,
      toPriceCents: quote.toPlan.priceCents,
    };
    await kit.ask(ctx, admin, action, `${customer.name}: ${quoted}. Go ahead?`);
  });

  kit.command(composer, "cancel", async (ctx, admin, args) => {
    const reason = parseNote(args.slice(1));
    if (!reason.ok) return void (await reply(ctx, usage("cancel", reason.error)));
    const found = await target(ctx, "cancel", args[0]);
    if (!found) return;
    const { customer, subscription } = found;
    const action: CancelAction = {
      kind: "feature",
      feature: "cancel",
      subscriptionId: subscription.id,
      accountNumber: customer.accountNumber,
      reason: reason.value || "cancelled from the admin chat",
    };
    await kit.ask(
      ctx,
      admin,
      action,
      `${customer.name}: cancel the subscription (${subscription.status})? Invoices for periods not started are voided; no refund is made; the router account is removed. This cannot be undone.`,
    );
  });

  return composer;
}
