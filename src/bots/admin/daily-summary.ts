import { sql } from "drizzle-orm";
import { formatKes } from "../../billing/money.ts";
import { type Executor, queryRows } from "../../db/client.ts";
import { counted } from "../../lib/plural.ts";
import { routerStatuses } from "../../network/health.ts";
import {
  type AdminAlertTarget,
  adminAlertRecipients,
  alerted,
  markAlerted,
  queueAdminAlert,
} from "./alert-queue.ts";

/** The daily summary to the admin chat (`adminAlertJobs` with `dailySummaryHour`). */

/** The audit action of a self sign-up (src/billing/self-signup.ts). */
export const SELF_SIGNUP_ACTION = "customer.self_signup";

/** The calendar date (YYYY-MM-DD) and hour of `at` in `timezone`. */
export function localDateHour(at: Date, timezone: string): { date: string; hour: number } {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: timezone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    hourCycle: "h23",
  }).formatToParts(at);
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "00";
  return { date: `${part("year")}-${part("month")}-${part("day")}`, hour: Number(part("hour")) % 24 };
}

export interface DailySummary {
  date: string;
  routersUp: number;
  routersDown: string[];
  active: number;
  suspended: number;
  pending: number;
  collectedTodayCents: number;
  paymentsToday: number;
  signupsToday: number;
  unmatchedWaiting: number;
  deadJobs24h: number;
  deadMessages24h: number;
}

/** The figures of the daily summary, read at `now` (the day is the ISP's calendar day). */
export async function dailySummary(tx: Executor, now: Date, timezone: string): Promise<DailySummary> {
  const at = now.toISOString();
  const dayStart = sql`(date_trunc('day', ${at}::timestamptz at time zone ${timezone}) at time zone ${timezone})`;
  const [figures] = await queryRows<Record<string, string | number | null>>(
    tx,
    sql`select
      (select count(*) from subscriptions where status = 'active') as active,
      (select count(*) from subscriptions where status = 'suspended') as suspended,
      (select count(*) from subscriptions where status = 'pending') as pending,
      (select coalesce(sum(amount_cents), 0) from payments where status = 'applied'
         and received_at >= ${dayStart} and received_at <= ${at}::timestamptz) as collected,
      (select count(*) from payments where status = 'applied'
         and received_at >= ${dayStart} and received_at <= ${at}::timestamptz) as paid,
      (select count(*) from audit_log where entity = 'customer' and action = ${SELF_SIGNUP_ACTION}
         and at >= ${dayStart} and at <= ${at}::timestamptz) as signups,
      (select count(*) from payments where status = 'unmatched') as unmatched,
      (select count(*) from provisioning_outbox where status = 'dead'
         and done_at > ${at}::timestamptz - interval '24 hours') as dead_jobs,
      (select count(*) from message_outbox where status = 'dead'
         and created_at > ${at}::timestamptz - interval '24 hours') as dead_messages`,
  );
  const n = (key: string) => Number(figures?.[key] ?? 0);
  const statuses = await routerStatuses(tx);
  return {
    date: localDateHour(now, timezone).date,
    routersUp: statuses.filter((r) => r.state !== "down").length,
    routersDown: statuses.filter((r) => r.state === "down").map((r) => r.name),
    active: n("active"),
    suspended: n("suspended"),
    pending: n("pending"),
    collectedTodayCents: n("collected"),
    paymentsToday: n("paid"),
    signupsToday: n("signups"),
    unmatchedWaiting: n("unmatched"),
    deadJobs24h: n("dead_jobs"),
    deadMessages24h: n("dead_messages"),
  };
}

export function dailySummaryText(s: DailySummary): string {
  return [
    `📊 Daily summary, ${s.date}`,
    `Routers: ${s.routersUp} up${s.routersDown.length ? `, ${s.routersDown.length} DOWN (${s.routersDown.join(", ")})` : ""}`,
    `Subscribers: ${s.active} active, ${s.suspended} suspended, ${s.pending} not paid yet`,
    `Collected today: ${formatKes(s.collectedTodayCents)} in ${counted(s.paymentsToday, "payment")}`,
    `New sign-ups today: ${s.signupsToday}`,
    `Unmatched payments waiting: ${s.unmatchedWaiting}${s.unmatchedWaiting ? " (/unmatched)" : ""}`,
    `Given up in 24 h: ${counted(s.deadJobs24h, "router job")}, ${counted(s.deadMessages24h, "message")}${s.deadJobs24h + s.deadMessages24h ? " (/failed)" : ""}`,
  ].join("\n");
}

/** The day's summary, once per ISP calendar day, at or after `dailySummaryHour`. */
export async function sendDailySummary(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { timezone: string; dailySummaryHour: number },
): Promise<Record<string, number>> {
  const { date, hour } = localDateHour(now, options.timezone);
  if (hour < options.dailySummaryHour) return { sent: 0 };
  if ((await adminAlertRecipients(tx, options.chatIds)).length === 0) return { sent: 0, noRecipients: 1 };
  if ((await alerted(tx, "daily_summary", [date])).size > 0) return { sent: 0 };
  const summary = await dailySummary(tx, now, options.timezone);
  const queued = await queueAdminAlert(tx, now, dailySummaryText(summary), {
    ...options,
    key: `summary:${date}`,
  });
  await markAlerted(tx, now, "daily_summary", [{ key: date, details: { queued } }]);
  return { sent: 1, queued };
}
