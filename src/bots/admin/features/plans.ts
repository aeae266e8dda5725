import { Composer, type Context } from "grammy";
import { formatKes } from "../../../billing/money.ts";
import { createPlan, listPlans, type PlanChanges, updatePlan } from "../../../billing/plans.ts";
import { type PeriodUnit, type PlanKind, periodUnits, planKinds } from "../../../db/schema/index.ts";
import { counted } from "../../../lib/plural.ts";
import type { AdminKit } from "../kit.ts";
import { type Parsed, parseAmount } from "../parse.ts";
import { adminActor } from "../roles.ts";

/**
 * `/plans`, `/plan_add`, `/plan_edit`: plans as the ISP sells them, through the billing core
 * (src/billing/plans.ts), whose refusals are shown as they are. A new price is what each
 * subscription's next invoice charges; a new speed or cap is pushed to the routers by the core.
 */

const GB = 1024 ** 3;

type Plan = Awaited<ReturnType<typeof listPlans>>[number];

const periodText = (count: number, unit: string) =>
  count === 1 ? unit.replace(/s$/, "") : `${count} ${unit}`;

export function planLine(plan: Plan): string {
  const cap = plan.dataCapBytes ? `, cap ${+(plan.dataCapBytes / GB).toFixed(2)} GB` : "";
  const sw = plan.nameSw ? ` / ${plan.nameSw}` : "";
  return `${plan.code} · ${plan.name}${sw} · ${plan.kind} · ${formatKes(plan.priceCents)} per ${periodText(plan.periodCount, plan.periodUnit)} · ${plan.rateLimit}${cap}${plan.active ? "" : " · retired"}`;
}

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

function parseKind(input: string | undefined): Parsed<PlanKind> {
  const kind = input?.toLowerCase();
  return kind && (planKinds as readonly string[]).includes(kind)
    ? ok(kind as PlanKind)
    : fail(`${input === undefined ? "Say the kind" : `"${input}" is not a kind`}: pppoe or hotspot.`);
}

function parseUnit(input: string | undefined): Parsed<PeriodUnit> {
  const typed = input?.toLowerCase();
  const unit = typed && !typed.endsWith("s") ? `${typed}s` : typed;
  return unit && (periodUnits as readonly string[]).includes(unit)
    ? ok(unit as PeriodUnit)
    : fail(
        `${input === undefined ? "Say the period unit" : `"${input}" is not a period unit`}: months, days or hours.`,
      );
}

function parseCount(input: string | undefined): Parsed<number> {
  if (!input || !/^\d{1,3}$/.test(input) || Number(input) < 1 || Number(input) > 366)
    return fail(
      `${input === undefined ? "Say how many units a period is" : `"${input}" is not a period length`}: 1 to 366, e.g. 1 month or 7 days.`,
    );
  return ok(Number(input));
}

function parseCapGb(input: string): Parsed<number | null> {
  if (/^(none|off|no|0)$/i.test(input)) return ok(null);
  if (!/^\d{1,6}(\.\d{1,2})?$/.test(input))
    return fail(`"${input}" is not a data cap: gigabytes, e.g. 50, or none.`);
  const bytes = Math.round(Number(input) * GB);
  return bytes > 0 ? ok(bytes) : fail("The data cap must be more than zero (or none).");
}

function parseActive(input: string): Parsed<boolean> {
  if (/^(yes|true|on|1|active)$/i.test(input)) return ok(true);
  if (/^(no|false|off|0|retired|retire)$/i.test(input)) return ok(false);
  return fail(`"${input}" is not yes or no.`);
}

const FIELDS = ["price", "speed", "name", "name_sw", "cap_gb", "active"] as const;

function parseChange(field: string | undefined, value: string): Parsed<PlanChanges> {
  switch (field?.toLowerCase()) {
    case "price": {
      const price = parseAmount(value);
      return price.ok ? ok({ priceCents: price.value }) : price;
    }
    case "speed":
      return value ? ok({ rateLimit: value }) : fail("Say the speed, e.g. 5M/10M.");
    case "name":
      return value ? ok({ name: value }) : fail("Say the name.");
    case "name_sw":
      return ok({ nameSw: /^(none|-)$/i.test(value) || value === "" ? null : value });
    case "cap_gb": {
      const cap = parseCapGb(value);
      return cap.ok ? ok({ dataCapBytes: cap.value }) : cap;
    }
    case "active": {
      const active = parseActive(value);
      return active.ok ? ok({ active: active.value }) : active;
    }
    default:
      return fail(
        `${field === undefined ? "Say the field" : `"${field}" is not a field`}: ${FIELDS.join(", ")}.`,
      );
  }
}

export function plansFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage } = kit;
  const composer = new Composer<Context>();

  kit.command(composer, "plans", async (ctx) => {
    const all = await listPlans(kit.db);
    if (all.length === 0) return void (await reply(ctx, "No plans yet. Add one with /plan_add."));
    await kit.replyLines(ctx, [`${counted(all.length, "plan")}:`, ...all.map(planLine)]);
  });

  kit.command(composer, "plan_add", async (ctx, admin, args) => {
    const [code, kindWord, priceWord, everyWord, unitWord, speed, ...nameWords] = args;
    if (!code) return void (await reply(ctx, usage("plan_add", "Say the plan's code, e.g. home-10.")));
    const kind = parseKind(kindWord);
    if (!kind.ok) return void (await reply(ctx, usage("plan_add", kind.error)));
    const price = parseAmount(priceWord);
    if (!price.ok) return void (await reply(ctx, usage("plan_add", price.error)));
    const count = parseCount(everyWord);
    if (!count.ok) return void (await reply(ctx, usage("plan_add", count.error)));
    const unit = parseUnit(unitWord);
    if (!unit.ok) return void (await reply(ctx, usage("plan_add", unit.error)));
    if (!speed) return void (await reply(ctx, usage("plan_add", "Say the speed, e.g. 5M/10M.")));
    const name = nameWords.join(" ");
    if (!name) return void (await reply(ctx, usage("plan_add", "Say the plan's name.")));
    await kit.answerBilling(ctx, async (tx, inTxCtx, now) => {
      const plan = await createPlan(inTxCtx, adminActor(admin.telegramId), {
        code: code.toLowerCase(),
        kind: kind.value,
        priceCents: price.value,
        periodCount: count.value,
        periodUnit: unit.value,
        rateLimit: speed,
        name,
      });
      await kit.say(tx, now, ctx.chat!.id, `✅ Plan added: ${planLine(plan)}`);
    });
  });

  kit.command(composer, "plan_edit", async (ctx, admin, args) => {
    const [code, field, ...valueWords] = args;
    if (!code) return void (await reply(ctx, usage("plan_edit", "Say the plan's code (see /plans).")));
    const change = parseChange(field, valueWords.join(" "));
    if (!change.ok) return void (await reply(ctx, usage("plan_edit", change.error)));
    await kit.answerBilling(ctx, async (tx, inTxCtx, now) => {
      const plan = await updatePlan(inTxCtx, adminActor(admin.telegramId), code.toLowerCase(), change.value);
      const note =
        "priceCents" in change.value
          ? "\nThe new price applies from each subscription's next period (invoices already issued keep theirs)."
          : "rateLimit" in change.value || "dataCapBytes" in change.value
            ? "\nThe routers are being told."
            : "";
      await kit.say(tx, now, ctx.chat!.id, `✅ Plan changed: ${planLine(plan)}${note}`);
    });
  });

  return composer;
}
