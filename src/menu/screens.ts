import { toWholeShillingsUp } from "../billing/money.ts";
import { displayPhone } from "../lib/phone.ts";
import type { MessageKey } from "../messaging/render.ts";
import {
  type Frame,
  HOME,
  type MenuContext,
  type Reaction,
  type Screen,
  type ScreenBody,
  shortName,
} from "./engine.ts";
import type { AccountView, Language, Outcome, PlanView, QuoteView, Refusal } from "./types.ts";

const short = (name: string, max?: number) => shortName(name, max);

const account = (ctx: MenuContext) =>
  ctx.memo("session:account", () => ctx.services.account(ctx.user.customer!.id)) as Promise<AccountView>;
// Lists are numbered: a session keeps the list it was shown, so `2` means the same plan on every request.
const plansOf = (ctx: MenuContext, kind: PlanView["kind"]) =>
  ctx.memo(`session:plans:${kind}`, () => ctx.services.plans(kind));

function validity(ctx: MenuContext, plan: PlanView): string {
  const one = plan.periodCount === 1;
  const key = `menu.period.${plan.periodUnit}.${one ? "one" : "many"}` as MessageKey;
  return ctx.t(key, { count: plan.periodCount });
}

const end = (lines: string[]): ScreenBody => ({ lines, end: true });
const confirmOption = (ctx: MenuContext, language?: Language) => [
  { key: "1", label: ctx.t("menu.nav.confirm", {}, language) },
];
const push = (screen: string, params: Record<string, string | number> = {}): Reaction => ({
  kind: "push",
  screen,
  params,
});
const finish = (key: MessageKey, params: Record<string, string | number> = {}): Outcome => ({
  next: "end",
  key,
  params,
});

function refusalOutcome(refusal: Refusal): Outcome {
  if (refusal.reason === "rate_limited") return finish("menu.error.tooMany");
  if (refusal.reason === "not_active") return finish("menu.plan.notActive");
  return finish("menu.error.payment");
}

/**
 * Pays by STK push from the dialling phone; the result arrives later by SMS. The payment intent is
 * recorded once per confirmation key, so the confirmation needs no separate claim.
 */
function pay(ctx: MenuContext, amountCents: number): Reaction {
  return {
    kind: "keyedEffect",
    run: async (idempotencyKey) => {
      const result = await ctx.services.requestPayment(ctx.user, ctx.session, {
        purpose: "balance",
        amountCents,
        idempotencyKey,
      });
      if (!result.ok) return refusalOutcome(result);
      return finish("menu.pay.sent", { amountCents: toWholeShillingsUp(amountCents) * 100 });
    },
  };
}

const home: Screen = {
  async body(ctx) {
    const title = ctx.t("menu.main.title");
    const labels: MessageKey[] = ctx.user.customer
      ? [
          "menu.main.account",
          "menu.main.pay",
          "menu.main.voucher",
          "menu.main.changePlan",
          "menu.main.language",
          "menu.main.help",
        ]
      : ["menu.main.voucher", "menu.main.signup", "menu.main.language", "menu.main.help"];
    return { lines: [title], options: labels.map((key, i) => ({ key: String(i + 1), label: ctx.t(key) })) };
  },
  async choose(ctx, _frame, choice) {
    if (choice.kind !== "option") return { kind: "hint", hint: { key: "menu.hint.invalid" } };
    const targets = ctx.user.customer
      ? ["account", "pay", "voucher", "plan", "language", "help"]
      : ["voucher", "signup", "language", "help"];
    return push(targets[Number(choice.key) - 1]!);
  },
};

const accountScreen: Screen = {
  async body(ctx) {
    if (!ctx.user.customer) return end([ctx.t("menu.notCustomer")]);
    const a = await account(ctx);
    const money =
      a.amountDueCents > 0
        ? ctx.t("menu.account.due", { amountCents: a.amountDueCents })
        : ctx.t("menu.account.credit", { amountCents: a.balanceCents });
    const last = a.lastPayment
      ? ctx.t("menu.account.lastPayment", {
          amountCents: a.lastPayment.amountCents,
          receivedAt: a.lastPayment.receivedAt.toISOString(),
        })
      : ctx.t("menu.account.noPayment");
    if (!a.plan || !a.status)
      return { lines: [ctx.t("menu.account.noPlan", { account: a.accountNumber }), money, last] };
    return {
      lines: [
        ctx.t("menu.account.plan", { plan: short(a.plan.name) }),
        ctx.t("menu.account.status", { status: ctx.t(`menu.status.${a.status}` as MessageKey) }),
        ...(a.periodEnd ? [ctx.t("menu.account.expires", { periodEndAt: a.periodEnd.toISOString() })] : []),
        money,
        last,
      ],
    };
  },
};

const payScreen: Screen = {
  async body(ctx) {
    if (!ctx.user.customer) return end([ctx.t("menu.notCustomer")]);
    const a = await account(ctx);
    if (a.amountDueCents > 0) {
      const due = toWholeShillingsUp(a.amountDueCents) * 100;
      return {
        lines: [ctx.t("menu.pay.due", { amountCents: a.amountDueCents })],
        options: [
          { key: "1", label: ctx.t("menu.pay.payDue", { amountCents: due }) },
          { key: "2", label: ctx.t("menu.pay.other") },
        ],
      };
    }
    return {
      lines: [ctx.t("menu.pay.nothingDue", { balanceCents: a.balanceCents })],
      options: [{ key: "1", label: ctx.t("menu.pay.otherOnly") }],
    };
  },
  async choose(ctx, _frame, choice) {
    const a = await account(ctx);
    if (choice.kind === "option" && choice.key === "1" && a.amountDueCents > 0) {
      // The option names the amount and the payer: choosing it is the confirmation.
      return pay(ctx, a.amountDueCents);
    }
    return push("payAmount");
  },
};

const payAmount: Screen = {
  async body(ctx) {
    return {
      lines: [
        ctx.t("menu.pay.enterAmount", {
          minCents: ctx.settings.minPayCents,
          maxCents: ctx.settings.maxPayCents,
        }),
      ],
      freeText: true,
    };
  },
  async choose(ctx, _frame, choice) {
    const text =
      choice.kind === "text" ? choice.text : choice.kind === "option" ? choice.key : String(choice.index + 1);
    const cleaned = text.replace(/,/g, "");
    if (!/^\d{1,9}$/.test(cleaned)) return { kind: "hint", hint: { key: "menu.hint.amount" } };
    const amountCents = Number(cleaned) * 100;
    if (amountCents < ctx.settings.minPayCents || amountCents > ctx.settings.maxPayCents) {
      return {
        kind: "hint",
        hint: {
          key: "menu.hint.range",
          params: { minCents: ctx.settings.minPayCents, maxCents: ctx.settings.maxPayCents },
        },
      };
    }
    return push("payConfirm", { amountCents });
  },
};

const payConfirm: Screen = {
  async body(ctx, frame) {
    return {
      lines: [
        ctx.t("menu.pay.confirm", {
          amountCents: Number(frame.params.amountCents),
          phone: displayPhone(ctx.user.phone),
        }),
      ],
      options: confirmOption(ctx),
    };
  },
  async choose(ctx, frame) {
    return pay(ctx, Number(frame.params.amountCents));
  },
};

const voucherList: Screen = {
  async body(ctx) {
    const plans = await plansOf(ctx, "hotspot");
    if (plans.length === 0) return end([ctx.t("menu.voucher.none")]);
    return {
      lines: [ctx.t("menu.voucher.choose")],
      list: plans.map((p) => ctx.t("menu.voucher.item", { plan: short(p.name), priceCents: p.priceCents })),
    };
  },
  async choose(ctx, _frame, choice) {
    const plans = await plansOf(ctx, "hotspot");
    if (choice.kind !== "item") return { kind: "hint", hint: { key: "menu.hint.invalid" } };
    return push("voucherConfirm", { planId: plans[choice.index]!.id });
  },
};

async function chosenPlan(ctx: MenuContext, frame: Frame, kind: PlanView["kind"]) {
  return (await plansOf(ctx, kind)).find((p) => p.id === Number(frame.params.planId)) ?? null;
}

const voucherConfirm: Screen = {
  async body(ctx, frame) {
    const plan = await chosenPlan(ctx, frame, "hotspot");
    if (!plan) return end([ctx.t("menu.voucher.none")]);
    return {
      lines: [
        ctx.t("menu.voucher.confirm", {
          plan: short(plan.name),
          validity: validity(ctx, plan),
          priceCents: plan.priceCents,
          phone: displayPhone(ctx.user.phone),
        }),
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
        return finish("menu.voucher.sent", { amountCents: toWholeShillingsUp(plan.priceCents) * 100 });
      },
    };
  },
};

async function planChoices(
  ctx: MenuContext,
): Promise<{ current: PlanView; choices: PlanView[]; subscriptionId: number } | ScreenBody> {
  if (!ctx.user.customer) return end([ctx.t("menu.notCustomer")]);
  const a = await account(ctx);
  if (!a.plan || a.subscriptionId === null) return end([ctx.t("menu.plan.noSubscription")]);
  const current = a.plan;
  const choices = (await plansOf(ctx, current.kind)).filter((p) => p.id !== current.id);
  return { current, choices, subscriptionId: a.subscriptionId };
}

const planList: Screen = {
  async body(ctx) {
    const found = await planChoices(ctx);
    if ("lines" in found) return found;
    if (found.choices.length === 0) return end([ctx.t("menu.plan.none")]);
    return {
      lines: [ctx.t("menu.plan.choose", { plan: short(found.current.name) })],
      list: found.choices.map((p) =>
        ctx.t("menu.plan.item", { plan: short(p.name), priceCents: p.priceCents }),
      ),
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

function quoteLine(ctx: MenuContext, q: QuoteView): string {
  const plan = short(q.toPlan.name);
  if (!q.immediate)
    return ctx.t("menu.plan.quoteScheduled", { plan, effectiveAt: q.effectiveAt.toISOString() });
  if (q.payableCents > 0)
    return ctx.t("menu.plan.quotePay", { plan, amountCents: toWholeShillingsUp(q.payableCents) * 100 });
  if (q.chargeCents > 0) return ctx.t("menu.plan.quoteCredit", { plan, chargeCents: q.chargeCents });
  if (q.creditCents > 0) return ctx.t("menu.plan.quoteRefund", { plan, creditCents: q.creditCents });
  return ctx.t("menu.plan.quoteFree", { plan });
}

const quoteOf = (ctx: MenuContext, frame: Frame) =>
  ctx.memo(`session:quote:${frame.params.subscriptionId}:${frame.params.planId}`, () =>
    ctx.services.quotePlanChange(Number(frame.params.subscriptionId), Number(frame.params.planId)),
  );

const planConfirm: Screen = {
  async body(ctx, frame) {
    const quote = await quoteOf(ctx, frame);
    if ("ok" in quote) {
      const outcome = refusalOutcome(quote) as Outcome & { next: "end" };
      return end([ctx.t(outcome.key)]);
    }
    if (quote.kind === "same") return end([ctx.t("menu.plan.same", { plan: short(quote.toPlan.name) })]);
    return { lines: [quoteLine(ctx, quote)], options: confirmOption(ctx) };
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
        if (quote.payableCents > 0 && quote.immediate) {
          const result = await ctx.services.requestPayment(ctx.user, ctx.session, {
            purpose: "plan_change",
            amountCents: quote.payableCents,
            planId,
            subscriptionId,
          });
          if (!result.ok) return refusalOutcome(result);
          return finish("menu.plan.sentPay", { amountCents: toWholeShillingsUp(quote.payableCents) * 100 });
        }
        const done = await ctx.services.changePlan(ctx.user, ctx.session, subscriptionId, planId);
        if ("ok" in done) return refusalOutcome(done);
        const plan = short(done.toPlan.name);
        return done.immediate
          ? finish("menu.plan.changed", { plan })
          : finish("menu.plan.scheduled", { plan, effectiveAt: done.effectiveAt.toISOString() });
      },
    };
  },
};

const language: Screen = {
  async body(ctx) {
    return {
      lines: [ctx.t("menu.language.choose")],
      options: [
        { key: "1", label: ctx.t("menu.language.en") },
        { key: "2", label: ctx.t("menu.language.sw") },
      ],
    };
  },
  async choose(_ctx, _frame, choice) {
    return push("languageConfirm", {
      language: choice.kind === "option" && choice.key === "2" ? "sw" : "en",
    });
  },
};

const languageConfirm: Screen = {
  async body(ctx, frame) {
    const chosen = frame.params.language as Language;
    return {
      lines: [ctx.t("menu.language.confirm", {}, chosen)],
      options: confirmOption(ctx, chosen),
      language: chosen,
    };
  },
  async choose(ctx, frame) {
    const chosen = frame.params.language as Language;
    const saved = { next: "home", notice: "menu.language.saved" } as const;
    return {
      kind: "keyedEffect",
      run: async (idempotencyKey) => {
        await ctx.services.setLanguage(ctx.user, ctx.session, chosen, idempotencyKey);
        ctx.language = chosen;
        return saved;
      },
      replay: saved,
    };
  },
};

const help: Screen = {
  async body(ctx) {
    return { lines: [ctx.t("menu.help.text")] };
  },
};

const signup: Screen = {
  async body(ctx) {
    return { lines: [ctx.t("menu.signup.text")] };
  },
};

/** The subscriber menu. Every channel shows these same screens. */
export const subscriberScreens: Record<string, Screen> = {
  [HOME]: home,
  account: accountScreen,
  pay: payScreen,
  payAmount,
  payConfirm,
  voucher: voucherList,
  voucherConfirm,
  plan: planList,
  planConfirm,
  language,
  languageConfirm,
  help,
  signup,
};
