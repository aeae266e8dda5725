import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { GATEWAY_OUTAGE_GIVE_UP_MS } from "../../messaging/sms-worker.ts";
import { type AdminAlertTarget, alerted, markAlerted, queueAdminAlert } from "./alert-queue.ts";
import { ADMIN_CHANNEL } from "./queued-api.ts";

/**
 * Messages given up (SMS and chat): a receipt, a voucher code or a router login a customer never
 * got, which only `/resend` delivers. Told once per message and death (a message sent again with
 * `/resend` and given up again is told again), in one alert per run. The admin chat's own messages
 * and SMS alerts to `ADMIN_PHONE` are left out: telling the admin chat it could not be told helps
 * nobody.
 */
const ENTITY = "message_outbox";
const LINES_SHOWN = 10;

type Row = {
  id: number;
  channel: string;
  recipient: string;
  template: string;
  params: Record<string, unknown>;
  attempts: number;
  last_error: string | null;
  next_attempt_at: Date | string;
};

export async function deadMessageAlerts(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { batch: number; lookbackMs: number },
  counts: Record<string, number>,
): Promise<void> {
  // A message is given up at most a day after it was written (sms-worker.ts): the lookback runs
  // from its writing.
  const since = new Date(now.getTime() - options.lookbackMs - GATEWAY_OUTAGE_GIVE_UP_MS);
  const rows = await queryRows<Row>(
    tx,
    sql`select id, channel, recipient, template, params, attempts, last_error, next_attempt_at
        from message_outbox
        where status = 'dead' and created_at >= ${since.toISOString()}::timestamptz
          and channel <> ${ADMIN_CHANNEL} and template <> 'admin_alert'
        order by id desc limit ${options.batch * 5}`,
  );
  // The time of its next try changes at every death: a message resent and given up again is new.
  const keyOf = (r: Row) => `${r.id}@${new Date(r.next_attempt_at).getTime()}`;
  const done = await alerted(tx, ENTITY, rows.map(keyOf));
  const fresh = rows
    .filter((r) => !done.has(keyOf(r)))
    .slice(0, options.batch)
    .reverse();
  if (fresh.length === 0) return;
  const lines = [
    `✉️ ${fresh.length === 1 ? "A message was" : `${fresh.length} messages were`} given up:`,
    ...fresh
      .slice(0, LINES_SHOWN)
      .map(
        (r) => `  • #${r.id} ${r.channel} to ${r.recipient} (${r.template}, ${r.attempts} tries)${reason(r)}`,
      ),
    ...(fresh.length > LINES_SHOWN ? [`  …and ${fresh.length - LINES_SHOWN} more (/failed).`] : []),
    "/resend <#number> [phone] sends one again, or by SMS to another number.",
  ];
  counts.queued =
    (counts.queued ?? 0) +
    (await queueAdminAlert(tx, now, lines.join("\n"), {
      ...options,
      key: `dead-messages:${fresh.map(keyOf).join(",")}`.slice(0, 400),
    }));
  await markAlerted(
    tx,
    now,
    ENTITY,
    fresh.map((r) => ({ key: keyOf(r), details: { channel: r.channel, template: r.template } })),
  );
  counts.deadMessages = (counts.deadMessages ?? 0) + fresh.length;
}

/** Why, as the sender recorded it; a voucher code a gateway quoted is not shown to a group. */
function reason(r: Row): string {
  if (!r.last_error) return "";
  const code = r.template === "voucher_code" && typeof r.params.code === "string" ? r.params.code : null;
  const text = code ? r.last_error.split(code).join("********") : r.last_error;
  return `: ${text.slice(0, 120)}`;
}
