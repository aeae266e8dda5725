import { and, desc, eq, gte, sql } from "drizzle-orm";
import { formatKes } from "../../billing/money.ts";
import { type Clock, DAY } from "../../clock.ts";
import { type Executor, queryRows } from "../../db/client.ts";
import { auditLog, customers, payments, plans, provisioningOutbox, routers } from "../../db/schema/index.ts";
import type { ScheduledJob } from "../../jobs/scheduler.ts";
import { displayPhone } from "../../lib/phone.ts";
import { counted } from "../../lib/plural.ts";
import { formatDateTime } from "../../messaging/render.ts";
import { type RouterStatus, routerStatuses } from "../../network/health.ts";
import {
  type AdminAlertTarget,
  ALERT_ACTION,
  adminAlertRecipients,
  alerted,
  markAlerted,
  queueAdminAlert,
} from "./alert-queue.ts";
import { SELF_SIGNUP_ACTION, sendDailySummary } from "./daily-summary.ts";
import { deadMessageAlerts } from "./dead-message-alerts.ts";
import { creditedTwiceAlerts, mpesaRequestAlerts } from "./mpesa-alerts.ts";
import { unresolvedPushAlerts } from "./unresolved-push-alerts.ts";

export { type AdminAlertTarget, adminAlertRecipients, queueAdminAlert } from "./alert-queue.ts";

/**
 * Alerts to the admin chat: queued like any answer (outbox rows on channel `telegram_admin`, sent
 * by the admin chat worker), to the configured admin chats, or to every owner's private chat when
 * none is configured.
 *
 * `adminAlertJobs` finds what happened, as scheduled jobs (one run at a time across instances, one
 * transaction per run): a router going down and coming back, provisioning given up, payments that
 * matched nothing, M-Pesa requests that could not be recorded (mpesa-alerts.ts), self sign-ups, and
 * a daily summary. What was alerted is recorded in the audit log
 * (action `admin.alerted`, by `system:admin-alerts`), in the transaction that queues the alert: a
 * router's last alerted state, each job, payment and sign-up alerted, each day's summary. So each
 * is told once, whatever the number of instances or restarts; a message's dedupe key
 * (`admin-alert:<chat>:<what>`) makes sure of it a second time.
 */

export const ALERTS_JOB = "admin.alerts";
export const DAILY_SUMMARY_JOB = "admin.daily-summary";
/** Events older than this when first seen (an alert job that did not run for days) are not told one by one. */
export const ALERT_LOOKBACK_MS = 2 * DAY;
/** At most this many items are told per kind and run (the rest follow on the next runs). */
const BATCH = 100;
/** Lines of one alert listing several jobs. */
const LINES_SHOWN = 10;

export interface AdminAlertOptions extends AdminAlertTarget {
  clock: Clock;
  /** The ISP's time zone (`settings.timezone`): times shown, the summary's day and hour. */
  timezone: string;
  /** Hour of the day (0–23, ISP time) of the daily summary; none: no summary. */
  dailySummaryHour?: number;
  /** How often the alerts job looks (cron, default every minute). */
  schedule?: string;
}

/** The alert jobs, for `startScheduler`. */
export function adminAlertJobs(options: AdminAlertOptions): ScheduledJob[] {
  const jobs: ScheduledJob[] = [
    {
      name: ALERTS_JOB,
      schedule: options.schedule ?? "* * * * *",
      run: (tx) => checkAdminAlerts(tx, options.clock.now(), options),
    },
  ];
  const hour = options.dailySummaryHour;
  if (hour !== undefined) {
    if (!Number.isInteger(hour) || hour < 0 || hour > 23)
      throw new Error("dailySummaryHour must be a whole hour from 0 to 23");
    // Every hour (and at start-up, `runAll`): sent once per day, at or after the hour, so a restart
    // that missed the hour catches up.
    jobs.push({
      name: DAILY_SUMMARY_JOB,
      schedule: "0 * * * *",
      run: (tx) => sendDailySummary(tx, options.clock.now(), { ...options, dailySummaryHour: hour }),
    });
  }
  return jobs;
}

type Counts = Record<string, number>;

/** One run of the alerts job: everything new since the last run, each told once. */
export async function checkAdminAlerts(
  tx: Executor,
  now: Date,
  options: Omit<AdminAlertOptions, "clock">,
): Promise<Counts> {
  const counts: Counts = {
    routersDown: 0,
    routersUp: 0,
    deadJobs: 0,
    unmatched: 0,
    mpesaRequests: 0,
    unresolvedPushes: 0,
    deadMessages: 0,
    signups: 0,
    queued: 0,
  };
  // Nobody to tell yet (the owner not seeded): nothing is marked as told, so it is told later.
  if ((await adminAlertRecipients(tx, options.chatIds)).length === 0) return { ...counts, noRecipients: 1 };
  await routerAlerts(tx, now, options, counts);
  await deadJobAlerts(tx, now, options, counts);
  await unmatchedAlerts(tx, now, options, counts);
  await mpesaRequestAlerts(tx, now, { ...options, batch: BATCH }, counts);
  await creditedTwiceAlerts(tx, now, { ...options, batch: BATCH }, counts);
  await unresolvedPushAlerts(tx, now, { ...options, batch: BATCH }, counts);
  await deadMessageAlerts(tx, now, { ...options, batch: BATCH, lookbackMs: ALERT_LOOKBACK_MS }, counts);
  await signupAlerts(tx, now, options, counts);
  return counts;
}

// ---- Routers down and back up -------------------------------------------------------------------

/** The last state each router was alerted in (`down` or `up`); none: never alerted (taken as up). */
async function lastAlertedRouterStates(tx: Executor): Promise<Map<number, string>> {
  const rows = await queryRows<{ entity_id: string; state: string | null }>(
    tx,
    sql`select distinct on (entity_id) entity_id, details->>'state' as state from audit_log
        where entity = 'router' and action = ${ALERT_ACTION}
        order by entity_id, at desc, id desc`,
  );
  return new Map(rows.map((r) => [Number(r.entity_id), r.state ?? "up"]));
}

async function routerAlerts(
  tx: Executor,
  now: Date,
  options: Omit<AdminAlertOptions, "clock">,
  counts: Counts,
): Promise<void> {
  const statuses = await routerStatuses(tx);
  const last = await lastAlertedRouterStates(tx);
  for (const r of statuses) {
    if (r.state === "unknown") continue;
    const before = last.get(r.id) ?? "up";
    if (r.state === before) continue;
    const changedAt = r.state === "down" ? r.lastErrorAt! : r.lastContactAt!;
    counts.queued! += await queueAdminAlert(tx, now, routerAlertText(r, options.timezone), {
      ...options,
      key: `router:${r.id}:${r.state}:${changedAt.getTime()}`,
    });
    await markAlerted(tx, now, "router", [
      { key: String(r.id), details: { state: r.state, router: r.name, at: changedAt.toISOString() } },
    ]);
    counts[r.state === "down" ? "routersDown" : "routersUp"]!++;
  }
}

export function routerAlertText(r: RouterStatus, timezone: string): string {
  const when = (d: Date | null) => (d ? formatDateTime("en", d, timezone) : "never");
  if (r.state === "down")
    return [
      `🔴 Router ${r.name} (${r.host}) is DOWN since ${when(r.lastErrorAt)}.`,
      `Error: ${(r.lastError ?? "unknown").slice(0, 300)}`,
      `Last contact ${when(r.lastContactAt)}. ${counted(r.pending, "change")} wait for it; nothing is lost.`,
    ].join("\n");
  return `✅ Router ${r.name} (${r.host}) is back: answered at ${when(r.lastContactAt)}. ${counted(r.pending, "change")} waiting, ${r.dead} given up (/routers).`;
}

// ---- Provisioning given up ----------------------------------------------------------------------

async function deadJobAlerts(
  tx: Executor,
  now: Date,
  options: Omit<AdminAlertOptions, "clock">,
  counts: Counts,
): Promise<void> {
  const rows = await tx
    .select({
      id: provisioningOutbox.id,
      action: provisioningOutbox.action,
      routerId: provisioningOutbox.routerId,
      routerName: routers.name,
      subscriptionId: provisioningOutbox.subscriptionId,
      voucherId: provisioningOutbox.voucherId,
      attempts: provisioningOutbox.attempts,
      lastError: provisioningOutbox.lastError,
      doneAt: provisioningOutbox.doneAt,
    })
    .from(provisioningOutbox)
    .leftJoin(routers, eq(routers.id, provisioningOutbox.routerId))
    .where(
      and(
        eq(provisioningOutbox.status, "dead"),
        gte(provisioningOutbox.doneAt, new Date(now.getTime() - ALERT_LOOKBACK_MS)),
      ),
    )
    .orderBy(provisioningOutbox.doneAt, provisioningOutbox.id)
    .limit(BATCH * 5);
  // A row retried (/retry) and given up again is a new event: its key has the time it died.
  const keyOf = (r: (typeof rows)[number]) => `${r.id}@${r.doneAt?.getTime() ?? 0}`;
  const done = await alerted(tx, "provisioning_outbox", rows.map(keyOf));
  const fresh = rows.filter((r) => !done.has(keyOf(r))).slice(0, BATCH);
  if (fresh.length === 0) return;
  // One alert per router: an outage that kills many jobs is one message, not a flood.
  const byRouter = new Map<string, typeof fresh>();
  for (const r of fresh) {
    const name = r.routerName ?? "any router";
    byRouter.set(name, [...(byRouter.get(name) ?? []), r]);
  }
  for (const [name, group] of byRouter) {
    const lines = [
      `⚠️ ${counted(group.length, "router job")} given up on ${name}:`,
      ...group
        .slice(0, LINES_SHOWN)
        .map(
          (j) =>
            `  • #${j.id} ${j.action}${j.subscriptionId ? ` subscription ${j.subscriptionId}` : ""}${j.voucherId ? ` voucher ${j.voucherId}` : ""} after ${j.attempts} tries${j.lastError ? `: ${j.lastError.slice(0, 120)}` : ""}`,
        ),
      ...(group.length > LINES_SHOWN ? [`  …and ${group.length - LINES_SHOWN} more (/failed).`] : []),
      group[0]!.routerName
        ? `/retry ${group[0]!.routerName} sends them again once the cause is fixed.`
        : "/failed lists them.",
    ];
    counts.queued! += await queueAdminAlert(tx, now, lines.join("\n"), {
      ...options,
      key: `dead:${group.map(keyOf).join(",")}`.slice(0, 400),
    });
  }
  await markAlerted(
    tx,
    now,
    "provisioning_outbox",
    fresh.map((r) => ({ key: keyOf(r), details: { routerId: r.routerId, action: r.action } })),
  );
  counts.deadJobs! += fresh.length;
}

// ---- Unmatched payments -------------------------------------------------------------------------

async function unmatchedAlerts(
  tx: Executor,
  now: Date,
  options: Omit<AdminAlertOptions, "clock">,
  counts: Counts,
): Promise<void> {
  // The unmatched queue is a work list (an admin empties it): every payment waiting in it is
  // considered, whenever its money was received.
  const rows = await tx
    .select()
    .from(payments)
    .where(eq(payments.status, "unmatched"))
    .orderBy(desc(payments.id))
    .limit(BATCH * 5);
  const done = await alerted(
    tx,
    "payment",
    rows.map((r) => String(r.id)),
  );
  const fresh = rows
    .filter((r) => !done.has(String(r.id)))
    .slice(0, BATCH)
    .reverse();
  for (const p of fresh) {
    const text = [
      `💰 Unmatched payment ${p.providerRef}: ${formatKes(p.amountCents)} received ${formatDateTime("en", p.receivedAt, options.timezone)}${p.payerName ? ` from ${p.payerName}` : ""}${p.accountReference ? `, account typed "${p.accountReference}"` : ""}.`,
      ...(p.holdReason ? [`Why it waits: ${p.holdReason}`] : []),
      `Place it with /assign ${p.providerRef} <account>.`,
    ].join("\n");
    counts.queued! += await queueAdminAlert(tx, now, text, { ...options, key: `unmatched:${p.id}` });
  }
  await markAlerted(
    tx,
    now,
    "payment",
    fresh.map((p) => ({ key: String(p.id), details: { alert: "unmatched", receipt: p.providerRef } })),
  );
  counts.unmatched! += fresh.length;
}

// ---- Self sign-ups ------------------------------------------------------------------------------

async function signupAlerts(
  tx: Executor,
  now: Date,
  options: Omit<AdminAlertOptions, "clock">,
  counts: Counts,
): Promise<void> {
  const rows = await tx
    .select({
      auditId: auditLog.id,
      at: auditLog.at,
      details: auditLog.details,
      name: customers.name,
      phone: customers.phone,
      accountNumber: customers.accountNumber,
      planName: plans.name,
    })
    .from(auditLog)
    .leftJoin(customers, sql`${customers.id}::text = ${auditLog.entityId}`)
    .leftJoin(plans, sql`${plans.id}::text = ${auditLog.details}->>'planId'`)
    .where(
      and(
        eq(auditLog.entity, "customer"),
        eq(auditLog.action, SELF_SIGNUP_ACTION),
        gte(auditLog.at, new Date(now.getTime() - ALERT_LOOKBACK_MS)),
      ),
    )
    .orderBy(auditLog.id)
    .limit(BATCH * 5);
  const done = await alerted(
    tx,
    "signup",
    rows.map((r) => String(r.auditId)),
  );
  const fresh = rows.filter((r) => !done.has(String(r.auditId))).slice(0, BATCH);
  for (const s of fresh) {
    const area = typeof s.details.area === "string" ? `, area ${s.details.area}` : "";
    const text =
      `🆕 New sign-up: ${s.name ?? "?"} (${s.accountNumber ?? "?"}), ${s.phone ? displayPhone(s.phone) : "?"}, plan ${s.planName ?? "?"}${area}, ${formatDateTime("en", s.at, options.timezone)}. /sub ${s.accountNumber ?? ""}`.trim();
    counts.queued! += await queueAdminAlert(tx, now, text, { ...options, key: `signup:${s.auditId}` });
  }
  await markAlerted(
    tx,
    now,
    "signup",
    fresh.map((s) => ({ key: String(s.auditId), details: { accountNumber: s.accountNumber } })),
  );
  counts.signups! += fresh.length;
}
