import type { MessageKey } from "../messaging/render.ts";
import type { MenuContext, Reaction, ScreenBody } from "./engine.ts";
import type { AccountView, Language, Outcome, PlanView, Refusal } from "./types.ts";

/** What the screens of both files (screens.ts, plan-screens.ts) share. */

export const account = (ctx: MenuContext) =>
  ctx.memo("session:account", () => ctx.services.account(ctx.user.customer!.id)) as Promise<AccountView>;

/**
 * Lists are numbered and every request replays the numbers typed. Read afresh (the session cache
 * lapsed, or another instance answers), a list may have changed, and `1` would name another plan: so
 * where the session stores what it was shown (USSD and chats), the first list it saw is the one it
 * keeps. A session that stores nothing (`session.plans` unset) reads the list afresh.
 */
export const plansOf = (ctx: MenuContext, kind: PlanView["kind"]): Promise<PlanView[]> =>
  ctx.memo(`session:plans:${kind}`, async () => {
    const shown = ctx.session.plans;
    const kept = shown?.[kind];
    if (kept) return kept;
    const current = await ctx.services.plans(kind);
    if (!shown || !ctx.services.bindPlans) return current;
    return ctx.services.bindPlans(ctx.session, ctx.user, kind, current);
  });

/** The plan the confirm screen showed, when the list still shows it at that price. */
export const samePlan = (shown: PlanView, now: PlanView | undefined) =>
  now !== undefined && now.id === shown.id && now.priceCents === shown.priceCents;

export const end = (lines: string[]): ScreenBody => ({ lines, end: true });

export const confirmOption = (ctx: MenuContext, language?: Language) => [
  { key: "1", label: ctx.t("menu.nav.confirm", {}, language) },
];

export const push = (screen: string, params: Record<string, string | number> = {}): Reaction => ({
  kind: "push",
  screen,
  params,
});

export const finish = (key: MessageKey, params: Record<string, string | number> = {}): Outcome => ({
  next: "end",
  key,
  params,
});

/** Words for a refusal: only a request M-Pesa could not take is a failed payment request. */
export function refusalOutcome(refusal: Refusal): Outcome {
  if (refusal.reason === "rate_limited") return finish("menu.error.tooMany");
  if (refusal.reason === "not_active") return finish("menu.plan.notActive");
  // The payment request refuses a retired package as `invalid`; only its message tells (as the portal reads it).
  if (refusal.reason === "unknown_plan" || /not on sale/.test(refusal.message))
    return finish("menu.plan.gone");
  if (refusal.reason === "amount_out_of_range") return finish("menu.error.amountRange");
  return finish("menu.error.payment");
}
