import { and, asc, eq, isNull, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import {
  type PeriodUnit,
  type PlanKind,
  periodUnits,
  planKinds,
  plans,
  provisioningOutbox,
} from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { enqueueProvisioning } from "./outbox.ts";

/**
 * Plans as an ISP edits them: created and changed by an admin, each change audited in its own
 * transaction. A new price is what the next invoice charges: invoices are issued ahead of each period
 * (INVOICE_LEAD_HOURS), so a subscription pays the old price until its next period starts. A new speed
 * or data cap is pushed to the routers (`ensure_profile`), as the plan's profile there must follow; a
 * new speed also reaches the subscribers online (they are reconnected onto it).
 */

export interface PlanInput {
  code: string;
  name: string;
  nameSw?: string | null;
  kind: PlanKind;
  priceCents: number;
  periodUnit: PeriodUnit;
  periodCount: number;
  /** RouterOS `rx/tx` from the router's side, e.g. `5M/10M`. */
  rateLimit: string;
  dataCapBytes?: number | null;
  timeLimitSeconds?: number | null;
}

export type PlanChanges = Partial<Omit<PlanInput, "code" | "kind">> & { active?: boolean };

const CODE = /^[a-z0-9][a-z0-9-]{1,31}$/;
const RATE = /^\d+(\.\d+)?[kMG]?\/\d+(\.\d+)?[kMG]?$/;
/** Far above any real plan: a typo of three zeros is refused rather than billed. */
const MAX_PRICE_CENTS = 100_000_000;

function problemsOf(plan: Partial<PlanInput>): string[] {
  const problems: string[] = [];
  if (plan.code !== undefined && !CODE.test(plan.code))
    problems.push("code: 2–32 lower-case letters, digits or dashes, e.g. home-10");
  if (plan.name !== undefined && (plan.name.trim() === "" || plan.name.length > 40))
    problems.push("name: 1–40 characters");
  if (
    plan.nameSw !== undefined &&
    plan.nameSw !== null &&
    (plan.nameSw.trim() === "" || plan.nameSw.length > 40)
  )
    problems.push("Kiswahili name: 1–40 characters");
  if (plan.kind !== undefined && !planKinds.includes(plan.kind)) problems.push("kind: pppoe or hotspot");
  if (
    plan.priceCents !== undefined &&
    (!Number.isSafeInteger(plan.priceCents) || plan.priceCents < 0 || plan.priceCents > MAX_PRICE_CENTS)
  )
    problems.push("price: whole cents from 0 to KES 1,000,000");
  if (plan.periodUnit !== undefined && !periodUnits.includes(plan.periodUnit))
    problems.push(`period unit: ${periodUnits.join(", ")}`);
  if (
    plan.periodCount !== undefined &&
    (!Number.isInteger(plan.periodCount) || plan.periodCount < 1 || plan.periodCount > 366)
  )
    problems.push("period count: 1–366");
  if (plan.rateLimit !== undefined && !RATE.test(plan.rateLimit))
    problems.push("speed: upload/download as RouterOS writes it, e.g. 5M/10M");
  if (
    plan.dataCapBytes !== undefined &&
    plan.dataCapBytes !== null &&
    (!Number.isSafeInteger(plan.dataCapBytes) || plan.dataCapBytes <= 0)
  )
    problems.push("data cap: a positive number of bytes");
  if (
    plan.timeLimitSeconds !== undefined &&
    plan.timeLimitSeconds !== null &&
    (!Number.isInteger(plan.timeLimitSeconds) || plan.timeLimitSeconds <= 0)
  )
    problems.push("time limit: a positive number of seconds");
  return problems;
}

function refuseProblems(problems: string[]): void {
  if (problems.length > 0) throw new BillingError("invalid_plan", problems.join("; "));
}

export async function createPlan(ctx: BillingContext, actor: Actor, input: PlanInput) {
  refuseProblems(problemsOf(input));
  const now = ctx.clock.now();
  return ctx.db.transaction(async (tx) => {
    const [taken] = await tx.select({ id: plans.id }).from(plans).where(eq(plans.code, input.code));
    if (taken) throw new BillingError("plan_exists", `a plan with code ${input.code} exists`);
    const [plan] = await tx
      .insert(plans)
      .values({ ...input, nameSw: input.nameSw ?? null, createdAt: now })
      .returning();
    await audit(tx, actor, now, {
      action: "plan.created",
      entity: "plan",
      entityId: plan!.id,
      details: { ...input },
    });
    return plan!;
  });
}

export async function updatePlan(ctx: BillingContext, actor: Actor, code: string, changes: PlanChanges) {
  refuseProblems(problemsOf(changes));
  const now = ctx.clock.now();
  return ctx.db.transaction(async (tx) => {
    const [before] = await tx.select().from(plans).where(eq(plans.code, code)).for("update");
    if (!before) throw new BillingError("unknown_plan", `no plan with code ${code}`);
    const [after] = await tx.update(plans).set(changes).where(eq(plans.id, before.id)).returning();
    const changed = Object.fromEntries(
      Object.entries(changes).filter(([key, value]) => before[key as keyof typeof before] !== value),
    );
    await audit(tx, actor, now, {
      action: "plan.updated",
      entity: "plan",
      entityId: before.id,
      details: {
        changed,
        before: Object.fromEntries(Object.keys(changed).map((k) => [k, before[k as keyof typeof before]])),
      },
    });
    if ("rateLimit" in changed || "dataCapBytes" in changed) {
      await pushProfile(tx, now, before.id, "rateLimit" in changed);
    }
    return after!;
  });
}

/**
 * The plan's profile on every router (the worker delivers a row without a router to all of them).
 * `rateLimitChanged`: subscribers online keep the speed they connected with until they reconnect,
 * which the worker then makes them do. Only the newest pending row of a plan is delivered, so a
 * speed change not yet delivered is carried into the row that replaces it.
 */
async function pushProfile(tx: Executor, now: Date, planId: number, rateLimitChanged: boolean) {
  const pending = rateLimitChanged
    ? []
    : await tx
        .select({ id: provisioningOutbox.id })
        .from(provisioningOutbox)
        .where(
          and(
            eq(provisioningOutbox.status, "pending"),
            eq(provisioningOutbox.action, "ensure_profile"),
            isNull(provisioningOutbox.routerId),
            sql`${provisioningOutbox.payload}->>'planId' = ${String(planId)}`,
            sql`${provisioningOutbox.payload}->>'rateLimitChanged' = 'true'`,
          ),
        )
        .limit(1);
  await enqueueProvisioning(tx, now, {
    action: "ensure_profile",
    routerId: null,
    payload: { planId, ...(rateLimitChanged || pending.length > 0 ? { rateLimitChanged: true } : {}) },
  });
}

export function listPlans(db: Executor) {
  return db.select().from(plans).orderBy(asc(plans.kind), asc(plans.priceCents), asc(plans.id));
}
