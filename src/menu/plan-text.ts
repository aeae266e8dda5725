import { planNameIn } from "../billing/accounts.ts";
import { formatParam, type MessageKey } from "../messaging/render.ts";
import { type MenuContext, shortName } from "./engine.ts";
import type { PlanView } from "./types.ts";

/**
 * How a plan reads on a screen: its name in the screen's language, then its terms (price and
 * period, data cap). A screen never says a thing twice: a period or data cap the name already
 * states ("Hotspot 1 hour", "Saa 24", "Bundle 10GB") is not repeated after it.
 */

/** The plan's name as this screen shows it: `name_sw` on Kiswahili screens when set, cut to fit. */
export function planLabel(ctx: MenuContext, plan: PlanView): string {
  return shortName(planNameIn(plan, ctx.language));
}

export function periodText(ctx: MenuContext, plan: Pick<PlanView, "periodUnit" | "periodCount">): string {
  const key = `menu.period.${plan.periodUnit}.${plan.periodCount === 1 ? "one" : "many"}` as MessageKey;
  return ctx.t(key, { count: plan.periodCount });
}

/** "24 hours", "1 day", "3 months": how long a sold voucher lasts (English, for the admin side). */
export function validityText(plan: Pick<PlanView, "periodUnit" | "periodCount">): string {
  const unit = plan.periodCount === 1 ? plan.periodUnit.replace(/s$/, "") : plan.periodUnit;
  return `${plan.periodCount} ${unit}`;
}

/** A data allowance as people read it: `10 GB`, `1.5 GB`, `500 MB` (binary units when the figure is). */
export function formatData(bytes: number): string {
  const base = bytes % 1024 ** 2 === 0 ? 1024 : 1000;
  const gb = bytes / base ** 3;
  if (gb >= 1) return `${Math.round(gb * 10) / 10} GB`;
  return `${Math.max(1, Math.round(bytes / base ** 2))} MB`;
}

type Unit = "hours" | "days" | "weeks" | "months";
/**
 * Ways a name writes a unit: after a number in English, before it in Kiswahili, and alone for one
 * of it ("Day Pass", "Monthly", "Wiki"; not "saa", which also means "clock").
 */
const unitWords: Record<Unit, { en: string; sw: string; one: string }> = {
  hours: { en: "h|hr|hrs|hour|hours", sw: "saa", one: "hour|hourly|saa moja" },
  days: { en: "d|day|days", sw: "siku", one: "day|daily|siku|siku moja" },
  weeks: { en: "w|wk|wks|week|weeks", sw: "wiki", one: "week|weekly|wiki|wiki moja" },
  // Not a bare "m": "10M" is a speed.
  months: { en: "mo|mos|mth|mths|month|months", sw: "mwezi|miezi", one: "month|monthly|mwezi|mwezi mmoja" },
};

/** The same length of time in other units: 24 hours is a day, 7 days a week. */
function equivalents(plan: Pick<PlanView, "periodUnit" | "periodCount">): [number, Unit][] {
  const n = plan.periodCount;
  const all: [number, Unit][] = [[n, plan.periodUnit]];
  if (plan.periodUnit === "hours" && n % 24 === 0) all.push([n / 24, "days"]);
  if (plan.periodUnit === "hours" && n % 168 === 0) all.push([n / 168, "weeks"]);
  if (plan.periodUnit === "days" && n % 7 === 0) all.push([n / 7, "weeks"]);
  return all;
}

// List screens are laid out on every request of a session: the answers for the few plans on sale
// are kept rather than worked out again.
const periodAnswers = new Map<string, boolean>();

/** Does `name` already say how long the plan lasts? */
export function statesPeriod(name: string, plan: Pick<PlanView, "periodUnit" | "periodCount">): boolean {
  const key = `${plan.periodUnit}:${plan.periodCount}:${name}`;
  let answer = periodAnswers.get(key);
  if (answer === undefined) {
    answer = namesPeriod(name.toLowerCase(), plan);
    if (periodAnswers.size >= 2_000) periodAnswers.clear();
    periodAnswers.set(key, answer);
  }
  return answer;
}

function namesPeriod(text: string, plan: Pick<PlanView, "periodUnit" | "periodCount">): boolean {
  return equivalents(plan).some(([count, unit]) => {
    const w = unitWords[unit];
    const patterns = [
      `(?:^|[^0-9.])${count}\\s*(?:${w.en})(?![a-z])`,
      `(?:^|[^a-z])(?:${w.sw})\\s*${count}(?![0-9])`,
    ];
    if (count === 1) patterns.push(`(?:^|[^a-z0-9])(?:${w.one}|(?:a|an|one)\\s+(?:${w.en}))(?![a-z])`);
    return patterns.some((p) => new RegExp(p).test(text));
  });
}

/** Does `name` already say the data allowance `data` (as `formatData` writes it)? */
export function statesData(name: string, data: string): boolean {
  const [amount, unit] = data.split(" ") as [string, string];
  const words = unit === "GB" ? "gb|gig|gigs" : "mb";
  const number = amount.replace(".", "\\.");
  return new RegExp(`(?:^|[^0-9.])${number}\\s*(?:${words})(?![a-z])`).test(name.toLowerCase());
}

/** Price and period (unless the name states the period), then the data cap (unless the name states it). */
export function planTerms(ctx: MenuContext, plan: PlanView): string {
  const label = planLabel(ctx, plan);
  const parts = [
    statesPeriod(label, plan)
      ? formatParam(ctx.language, "priceCents", plan.priceCents)
      : ctx.t("menu.plan.price", { priceCents: plan.priceCents, period: periodText(ctx, plan) }),
  ];
  if (plan.dataCapBytes !== null && plan.dataCapBytes > 0) {
    const data = formatData(plan.dataCapBytes);
    if (!statesData(label, data)) parts.push(ctx.t("menu.plan.data", { data }));
  }
  return parts.join(", ");
}

/** One plan as a list item or a confirmation's first line: `Home 10: KES 2,500 for 1 month`. */
export function planLine(
  ctx: MenuContext,
  plan: PlanView,
  key: "menu.plan.item" | "menu.voucher.item",
): string {
  return ctx.t(key, { plan: planLabel(ctx, plan), terms: planTerms(ctx, plan) });
}
