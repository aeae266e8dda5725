import type { MessageKey } from "../messaging/render.ts";
import type { MenuContext, Reaction, ScreenBody } from "./engine.ts";
import type { AccountView, Language, Outcome, PlanView, Refusal } from "./types.ts";

/** What the screens of both files (screens.ts, plan-screens.ts) share. */

export const account = (ctx: MenuContext) =>
  ctx.memo("session:account", () => ctx.services.account(ctx.user.customer!.id)) as Promise<AccountView>;

// Lists are numbered: a session keeps the list it was shown, so `2` means the same plan on every request.
export const plansOf = (ctx: MenuContext, kind: PlanView["kind"]) =>
  ctx.memo(`session:plans:${kind}`, () => ctx.services.plans(kind));

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

export function refusalOutcome(refusal: Refusal): Outcome {
  if (refusal.reason === "rate_limited") return finish("menu.error.tooMany");
  if (refusal.reason === "not_active") return finish("menu.plan.notActive");
  return finish("menu.error.payment");
}
