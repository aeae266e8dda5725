import { normalizeKenyanPhone } from "../billing/intents/request.ts";
import { mpesaAmountCents, withoutThousandsCommas } from "../billing/money.ts";
import { displayPhone } from "../lib/phone.ts";
import type { MessageKey } from "../messaging/render.ts";
import { myVoucher, myVouchers } from "./bought-voucher-screens.ts";
import { type Frame, HOME, type MenuContext, type Reaction, type Screen } from "./engine.ts";
import { planConfirm, planList, voucherConfirm, voucherList } from "./plan-screens.ts";
import { planLabel } from "./plan-text.ts";
import { account, confirmOption, end, finish, push, refusalOutcome } from "./screen-kit.ts";
import { signup, signupArea, signupConfirm, signupName, signupOpen } from "./signup-screens.ts";
import type { Language } from "./types.ts";

/** The number a payment prompt goes to: the one typed on "pay from another number", else the user's. */
const payerOf = (ctx: MenuContext, frame: Frame): string =>
  typeof frame.params.payer === "string" ? frame.params.payer : ctx.user.phone;

/**
 * Pays by STK push from the dialling phone, or from `payerPhone` paying for it; the result arrives
 * later by SMS. The payment intent is recorded once per confirmation key, so the confirmation needs
 * no separate claim.
 */
function pay(ctx: MenuContext, amountCents: number, payerPhone?: string): Reaction {
  const other = payerPhone && payerPhone !== ctx.user.phone ? payerPhone : undefined;
  return {
    kind: "keyedEffect",
    run: async (idempotencyKey) => {
      const result = await ctx.services.requestPayment(ctx.user, ctx.session, {
        purpose: "balance",
        amountCents,
        idempotencyKey,
        ...(other ? { payerPhone: other } : {}),
      });
      if (!result.ok) return refusalOutcome(result);
      const asked = mpesaAmountCents(amountCents);
      return other
        ? finish("menu.pay.sentOther", { amountCents: asked, phone: displayPhone(other) })
        : finish("menu.pay.sent", { amountCents: asked });
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
      : [
          "menu.main.voucher",
          signupOpen(ctx) ? "menu.main.join" : "menu.main.signup",
          "menu.main.language",
          "menu.main.help",
        ];
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
    if (a.closed) return end([ctx.t("menu.account.closed", { account: a.accountNumber })]);
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
    // Before the first payment nothing has been paid for, so there is no end date to show.
    const paidUntil =
      a.periodEnd && a.status !== "pending"
        ? [
            ctx.t(a.periodEnded ? "menu.account.expired" : "menu.account.expires", {
              periodEndAt: a.periodEnd.toISOString(),
            }),
          ]
        : [];
    return {
      lines: [
        ctx.t("menu.account.plan", { plan: planLabel(ctx, a.plan) }),
        ctx.t("menu.account.status", { status: ctx.t(`menu.status.${a.status}` as MessageKey) }),
        ...paidUntil,
        money,
        last,
      ],
    };
  },
};

/** "Pay from another M-Pesa number" follows the other options: after "pay what is due" when there is any. */
const fromOtherKey = (owing: boolean): string => (owing ? "3" : "2");

const payScreen: Screen = {
  async body(ctx) {
    if (!ctx.user.customer) return end([ctx.t("menu.notCustomer")]);
    const a = await account(ctx);
    // Money paid to it would wait for an admin to give it back: better not asked for.
    if (a.closed) return end([ctx.t("menu.pay.closed", { account: a.accountNumber })]);
    if (a.amountDueCents > 0) {
      const due = mpesaAmountCents(a.amountDueCents);
      return {
        lines: [ctx.t("menu.pay.due", { amountCents: a.amountDueCents })],
        options: [
          { key: "1", label: ctx.t("menu.pay.payDue", { amountCents: due }) },
          { key: "2", label: ctx.t("menu.pay.other") },
          { key: fromOtherKey(true), label: ctx.t("menu.pay.fromOther") },
        ],
      };
    }
    return {
      lines: [ctx.t("menu.pay.nothingDue", { balanceCents: a.balanceCents })],
      options: [
        { key: "1", label: ctx.t("menu.pay.otherOnly") },
        { key: fromOtherKey(false), label: ctx.t("menu.pay.fromOther") },
      ],
    };
  },
  async choose(ctx, _frame, choice) {
    const a = await account(ctx);
    const owing = a.amountDueCents > 0;
    const key = choice.kind === "option" ? choice.key : "";
    // The option names the amount and the payer: choosing it is the confirmation.
    if (owing && key === "1") return pay(ctx, a.amountDueCents);
    if (key === fromOtherKey(owing)) return push("payPhone");
    return push("payAmount");
  },
};

/** Another M-Pesa number to prompt: a line without M-Pesa, or someone else paying for this account. */
const payPhone: Screen = {
  async body(ctx) {
    return { lines: [ctx.t("menu.pay.enterPhone")], freeText: true };
  },
  async choose(_ctx, _frame, choice) {
    const text =
      choice.kind === "text" ? choice.text : choice.kind === "option" ? choice.key : String(choice.index + 1);
    const payer = normalizeKenyanPhone(text.replace(/\s+/g, ""));
    if (!payer) return { kind: "hint", hint: { key: "menu.hint.phone" } };
    return push("payAmount", { payer });
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
  async choose(ctx, frame, choice) {
    const text =
      choice.kind === "text" ? choice.text : choice.kind === "option" ? choice.key : String(choice.index + 1);
    const cleaned = withoutThousandsCommas(text);
    if (cleaned === null || !/^\d{1,9}$/.test(cleaned))
      return { kind: "hint", hint: { key: "menu.hint.amount" } };
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
    return push("payConfirm", { ...frame.params, amountCents });
  },
};

const payConfirm: Screen = {
  async body(ctx, frame) {
    return {
      lines: [
        ctx.t("menu.pay.confirm", {
          amountCents: Number(frame.params.amountCents),
          phone: displayPhone(payerOf(ctx, frame)),
        }),
      ],
      options: confirmOption(ctx),
    };
  },
  async choose(ctx, frame) {
    return pay(ctx, Number(frame.params.amountCents), payerOf(ctx, frame));
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
      replayed: () => {
        ctx.language = chosen;
      },
    };
  },
};

const help: Screen = {
  async body(ctx) {
    // Only a customer has an account number to pay to.
    const customer = ctx.user.customer;
    return {
      lines: [
        customer ? ctx.t("menu.help.text", { account: customer.accountNumber }) : ctx.t("menu.help.visitor"),
      ],
    };
  },
};

/** The subscriber menu. Every channel shows these same screens. */
export const subscriberScreens: Record<string, Screen> = {
  [HOME]: home,
  account: accountScreen,
  pay: payScreen,
  payPhone,
  payAmount,
  payConfirm,
  voucher: voucherList,
  voucherConfirm,
  myVouchers,
  myVoucher,
  plan: planList,
  planConfirm,
  language,
  languageConfirm,
  help,
  signup,
  signupName,
  signupArea,
  signupConfirm,
};
