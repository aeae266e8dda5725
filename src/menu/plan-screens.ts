import { mpesaAmountCents } from "../billing/money.ts";
import { displayPhone } from "../lib/phone.ts";
import type { Frame, MenuContext, Screen, ScreenBody } from "./engine.ts";
import { servedCountriesText } from "./not-served.ts";
import { planLabel, planLine } from "./plan-text.ts";
import {
  account,
  confirmOption,
  end,
  finish,
  plansOf,
  push,
  refusalOutcome,
  samePlan,
} from "./screen-kit.ts";
import type { Outcome, PlanView, QuoteView } from "./types.ts";

/** Buying a hotspot voucher and changing plan: the screens that list and confirm plans. */

export const voucherList: Screen = {
  async body(ctx) {
    // A number the channel gave that is not served (WhatsApp), or one it keeps to itself: M-Pesa
    // cannot be asked to charge it, and no other number can be given there.
    if (!ctx.user.phone && ctx.user.phoneFromChannel)
      return end([
        ctx.t(ctx.user.phoneHidden ? "menu.voucher.hiddenPhone" : "menu.voucher.foreignPhone", {
          countries: servedCountriesText(ctx.settings, ctx.language),
        }),
      ]);
    const plans = await plansOf(ctx, "hotspot");
    // Numbered after the plans, so that it takes no plan's number however many are on sale; shown
    // even when none is, since codes bought earlier may still be valid.
    const mine = [{ key: String(plans.length + 1), label: ctx.t("menu.voucher.mine") }];
    if (plans.length === 0) return { lines: [ctx.t("menu.voucher.none")], options: mine };
    return {
      lines: [ctx.t("menu.voucher.choose")],
      list: plans.map((p) => planLine(ctx, p, "menu.voucher.item")),
      options: mine,
    };
  },
  async choose(ctx, _frame, choice) {
    if (choice.kind === "option") return push("myVouchers");
    const plans = await plansOf(ctx, "hotspot");
    if (choice.kind !== "item") return { kind: "hint", hint: { key: "menu.hint.invalid" } };
    return push("voucherConfirm", { planId: plans[choice.index]!.id });
  },
};

async function chosenPlan(ctx: MenuContext, frame: Frame, kind: PlanView["kind"]) {
  return (await plansOf(ctx, kind)).find((p) => p.id === Number(frame.params.planId)) ?? null;
}

export const voucherConfirm: Screen = {
  async body(ctx, frame) {
    const plan = await chosenPlan(ctx, frame, "hotspot");
    if (!plan) return end([ctx.t("menu.voucher.none")]);
    return {
      lines: [
        planLine(ctx, plan, "menu.voucher.item"),
        ctx.t("menu.voucher.confirm", { phone: displayPhone(ctx.user.phone) }),
      ],
      options: confirmOption(ctx),
    };
  },
  async choose(ctx, frame) {
    const plan = (await chosenPlan(ctx, frame, "hotspot"))!;
    return {
      kind: "keyedEffect",
      run: async (idempotencyKey) => {
        const result = await ctx.services.requestPayment(ctx.user, ctx.session, {
          purpose: "voucher",
          amountCents: plan.priceCents,
          planId: plan.id,
          idempotencyKey,
        });
        if (!result.ok) return refusalOutcome(result);
        return finish("menu.voucher.sent", { amountCents: mpesaAmountCents(plan.priceCents) });
      },
    };
  },
};

async function planChoices(
  ctx: MenuContext,
): Promise<{ current: PlanView; choices: PlanView[]; subscriptionId: number } | ScreenBody> {
  if (!ctx.user.customer) return end([ctx.t("menu.notCustomer")]);
  const a = await account(ctx);
  if (a.closed) return end([ctx.t("menu.account.closed", { account: a.accountNumber })]);
  if (!a.plan || a.subscriptionId === null) return end([ctx.t("menu.plan.noSubscription")]);
  const current = a.plan;
  const choices = (await plansOf(ctx, current.kind)).filter((p) => p.id !== current.id);
  return { current, choices, subscriptionId: a.subscriptionId };
}

export const planList: Screen = {
  async body(ctx) {
    const found = await planChoices(ctx);
    if ("lines" in found) return found;
    if (found.choices.length === 0) return end([ctx.t("menu.plan.none")]);
    return {
      lines: [ctx.t("menu.plan.choose", { plan: planLabel(ctx, found.current) })],
      list: found.choices.map((p) => planLine(ctx, p, "menu.plan.item")),
    };
  },
  async choose(ctx, _frame, choice) {
    const found = await planChoices(ctx);
    if ("lines" in found || choice.kind !== "item")
      return { kind: "hint", hint: { key: "menu.hint.invalid" } };
    return push("planConfirm", {
      planId: found.choices[choice.index]!.id,
      subscriptionId: found.subscriptionId,
    });
  },
};

/**
 * What the change costs, in the figures the rest of the flow uses (src/billing/money.ts): the
 * amount to pay is the charge itself, exactly what M-Pesa asks and what the "Charged" SMS says.
 */
function quoteLine(ctx: MenuContext, q: QuoteView): string {
  if (q.withNextPayment) return ctx.t("menu.plan.quoteNextPayment");
  if (!q.immediate) return ctx.t("menu.plan.quoteScheduled", { effectiveAt: q.effectiveAt.toISOString() });
  if (q.payableCents > 0)
    return ctx.t("menu.plan.quotePay", { amountCents: mpesaAmountCents(q.payableCents) });
  if (q.chargeCents > 0) return ctx.t("menu.plan.quoteCredit", { chargeCents: q.chargeCents });
  if (q.creditCents > 0) return ctx.t("menu.plan.quoteRefund", { creditCents: q.creditCents });
  return ctx.t("menu.plan.quoteFree");
}

const quoteOf = (ctx: MenuContext, frame: Frame) =>
  ctx.memo(`session:quote:${frame.params.subscriptionId}:${frame.params.planId}`, () =>
    ctx.services.quotePlanChange(Number(frame.params.subscriptionId), Number(frame.params.planId)),
  );

/** A quote for another plan or price than the list the subscriber chose from showed. */
async function unlike(ctx: MenuContext, frame: Frame, quote: QuoteView): Promise<boolean> {
  const shown = await chosenPlan(ctx, frame, quote.toPlan.kind);
  return !shown || !samePlan(shown, quote.toPlan);
}

export const planConfirm: Screen = {
  async body(ctx, frame) {
    const quote = await quoteOf(ctx, frame);
    if ("ok" in quote) {
      const outcome = refusalOutcome(quote) as Outcome & { next: "end" };
      return end([ctx.t(outcome.key)]);
    }
    if (await unlike(ctx, frame, quote)) return end([ctx.t("menu.plan.listChanged")]);
    if (quote.kind === "same") return end([ctx.t("menu.plan.same", { plan: planLabel(ctx, quote.toPlan) })]);
    return {
      lines: [planLine(ctx, quote.toPlan, "menu.plan.item"), quoteLine(ctx, quote)],
      options: confirmOption(ctx),
    };
  },
  async choose(ctx, frame) {
    const subscriptionId = Number(frame.params.subscriptionId);
    const planId = Number(frame.params.planId);
    return {
      kind: "effect",
      run: async () => {
        // Quoted again at the moment of confirmation: the price of the rest of the period shrinks by the minute.
        const quote = await ctx.services.quotePlanChange(subscriptionId, planId);
        if ("ok" in quote) return refusalOutcome(quote);
        // The plan's price changed since the list was shown: what the subscriber agreed to is gone.
        if (await unlike(ctx, frame, quote)) return finish("menu.plan.listChanged");
        if (quote.payableCents > 0 && quote.immediate) {
          const result = await ctx.services.requestPayment(ctx.user, ctx.session, {
            purpose: "plan_change",
            amountCents: quote.payableCents,
            planId,
            subscriptionId,
          });
          if (!result.ok) return refusalOutcome(result);
          return finish("menu.plan.sentPay", { amountCents: mpesaAmountCents(quote.payableCents) });
        }
        const done = await ctx.services.changePlan(ctx.user, ctx.session, subscriptionId, planId);
        if ("ok" in done) return refusalOutcome(done);
        const plan = planLabel(ctx, done.toPlan);
        if (done.immediate) return finish("menu.plan.changed", { plan });
        return done.withNextPayment
          ? finish("menu.plan.scheduledNextPayment", { plan })
          : finish("menu.plan.scheduled", { plan, effectiveAt: done.effectiveAt.toISOString() });
      },
    };
  },
};
