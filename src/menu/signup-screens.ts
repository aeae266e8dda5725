import { mpesaAmountCents } from "../billing/money.ts";
import { plainPunctuation } from "../lib/sms-text.ts";
import { AREA_NAME_MAX, type Frame, type MenuContext, type Screen, shortName } from "./engine.ts";
import { servedCountriesText } from "./not-served.ts";
import { planLine } from "./plan-text.ts";
import { confirmOption, end, finish, plansOf, push, samePlan } from "./screen-kit.ts";
import type { SignupArea } from "./types.ts";

/**
 * Self sign-up: a newcomer picks a home (PPPoE) plan, types their name, picks their area and
 * confirms. The confirmation creates a pending customer; the first payment starts the service.
 */

/** Longest name accepted: it goes on SMS and invoices whole (screens cut it to NAME_MAX). */
export const SIGNUP_NAME_MAX = 40;

/** The screens of the sign-up, in order (a chat adapter may ask for a phone before them). */
export const SIGNUP_SCREENS: ReadonlySet<string> = new Set([
  "signup",
  "signupName",
  "signupArea",
  "signupConfirm",
]);

const areasOf = (ctx: MenuContext): readonly SignupArea[] => ctx.settings.signupAreas ?? [];

/** Self sign-up is offered when areas are configured; otherwise the menu only says how to sign up. */
export const signupOpen = (ctx: MenuContext) => areasOf(ctx).length > 0;

/** A name as people write it: letters, spaces, `'`, `-`, `.`; at least two letters, no digits. */
export function cleanName(text: string): string | null {
  // Phones type typographic apostrophes and dashes (Ng’ang’a): they are the plain ones.
  const name = plainPunctuation(text).replace(/\s+/g, " ").trim();
  if (name.length > SIGNUP_NAME_MAX) return null;
  if (!/^[\p{L}\p{M}][\p{L}\p{M} .'-]*$/u.test(name)) return null;
  return (name.match(/\p{L}/gu) ?? []).length >= 2 ? name : null;
}

const invalid = { kind: "hint", hint: { key: "menu.hint.invalid" } } as const;

export const signup: Screen = {
  async body(ctx) {
    if (!signupOpen(ctx)) return { lines: [ctx.t("menu.signup.text")] };
    // No number: M-Pesa needs one, and the account is keyed by it. A chat that has not shared its
    // number is not at an end: a chat adapter that asks for the contact on this screen
    // (SIGNUP_SCREENS) can show it again. A number the channel gave is not served, or the channel
    // keeps it to itself: no sharing helps.
    if (!ctx.user.phone)
      return ctx.user.phoneFromChannel
        ? end([
            ctx.t(ctx.user.phoneHidden ? "menu.signup.hiddenPhone" : "menu.signup.foreignPhone", {
              countries: servedCountriesText(ctx.settings, ctx.language),
            }),
          ])
        : { lines: [ctx.t("menu.signup.needPhone")] };
    if (ctx.user.customer)
      return end([ctx.t("menu.signup.exists", { account: ctx.user.customer.accountNumber })]);
    const plans = await plansOf(ctx, "pppoe");
    if (plans.length === 0) return end([ctx.t("menu.signup.none")]);
    return {
      lines: [ctx.t("menu.signup.choosePlan")],
      list: plans.map((p) => planLine(ctx, p, "menu.plan.item")),
    };
  },
  async choose(ctx, _frame, choice) {
    if (choice.kind !== "item" || !signupOpen(ctx) || !ctx.user.phone) return invalid;
    const plan = (await plansOf(ctx, "pppoe"))[choice.index];
    return plan ? push("signupName", { planId: plan.id }) : invalid;
  },
};

export const signupName: Screen = {
  async body(ctx) {
    return { lines: [ctx.t("menu.signup.name")], freeText: true, emptyHint: { key: "menu.hint.name" } };
  },
  async choose(_ctx, frame, choice) {
    const name = choice.kind === "text" ? cleanName(choice.text) : null;
    if (!name) return { kind: "hint", hint: { key: "menu.hint.name" } };
    return push("signupArea", { planId: frame.params.planId!, name });
  },
};

export const signupArea: Screen = {
  async body(ctx) {
    return {
      lines: [ctx.t("menu.signup.area")],
      list: areasOf(ctx).map((a) => shortName(a.name, AREA_NAME_MAX)),
    };
  },
  async choose(ctx, frame, choice) {
    if (choice.kind !== "item" || !areasOf(ctx)[choice.index]) return invalid;
    return push("signupConfirm", { ...frame.params, area: choice.index });
  },
};

async function chosen(ctx: MenuContext, frame: Frame) {
  const plan = (await plansOf(ctx, "pppoe")).find((p) => p.id === Number(frame.params.planId));
  const area = areasOf(ctx)[Number(frame.params.area)];
  return plan && area ? { plan, area, name: String(frame.params.name) } : null;
}

export const signupConfirm: Screen = {
  async body(ctx, frame) {
    const found = await chosen(ctx, frame);
    if (!found) return end([ctx.t("menu.signup.none")]);
    return {
      lines: [
        ctx.t("menu.signup.confirm", {
          name: shortName(found.name),
          area: shortName(found.area.name, AREA_NAME_MAX),
        }),
        planLine(ctx, found.plan, "menu.plan.item"),
      ],
      options: confirmOption(ctx),
    };
  },
  async choose(ctx, frame) {
    const found = await chosen(ctx, frame);
    if (!found) return invalid;
    // Claimed and recorded per step by the engine: a repeated confirm shows this outcome again and
    // creates nothing (the phone's unique customer would refuse a second one anyway).
    return {
      kind: "effect",
      run: async () => {
        // The sign-up bills the plan at its price now: it must be the price the screen showed.
        const now = (await ctx.services.plans("pppoe")).find((p) => p.id === found.plan.id);
        if (!now) return finish("menu.plan.gone");
        if (!samePlan(found.plan, now)) return finish("menu.plan.listChanged");
        const result = await ctx.services.signUp(ctx.user, ctx.session, {
          name: found.name,
          planId: found.plan.id,
          area: found.area,
          language: ctx.language,
          ...(ctx.settings.adminPhone ? { adminPhone: ctx.settings.adminPhone } : {}),
        });
        if (result.ok)
          return finish("menu.signup.done", {
            account: result.accountNumber,
            amountCents: mpesaAmountCents(result.amountDueCents),
          });
        if ("accountNumber" in result) return finish("menu.signup.exists", { account: result.accountNumber });
        if (result.reason === "unknown_plan") return finish("menu.signup.none");
        return finish("menu.error.generic");
      },
    };
  },
};
