import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { type AdminAlertTarget, ALERT_ACTION, markAlerted, queueAdminAlert } from "./alert-queue.ts";
import { ADMIN_CHANNEL } from "./queued-api.ts";

/**
 * Messages given up (SMS and chat): a receipt, a voucher code or a router login a customer never
 * got, which only `/resend` delivers. Told once per message and death (a message sent again with
 * `/resend` and given up again is told again), in one alert per run, as long as `lookbackMs` after
 * its death. The admin chat's own messages
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
  key: string;
};

export async function deadMessageAlerts(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { batch: number; lookbackMs: number },
  counts: Record<string, number>,
): Promise<void> {
  // A message's next try is set when it is given up (or left at its last claim, just before), and
  // set anew when /resend puts it back: the time of its death, and with its id the alert's key.
  const key = sql`m.id::text || '@' || floor(extract(epoch from m.next_attempt_at) * 1000)::bigint::text`;
  // Oldest first, those already told left out in the query: a burst of deaths is told over the
  // next runs, none crowded out.
  const fresh = await queryRows<Row>(
    tx,
    sql`select m.id, m.channel, m.recipient, m.template, m.params, m.attempts, m.last_error, ${key} as key
        from message_outbox m
        where m.status = 'dead'
          and m.next_attempt_at >= ${new Date(now.getTime() - options.lookbackMs).toISOString()}::timestamptz
          and m.channel <> ${ADMIN_CHANNEL} and m.template <> 'admin_alert'
          and not exists (select 1 from audit_log a
            where a.entity = ${ENTITY} and a.entity_id = ${key} and a.action = ${ALERT_ACTION})
        order by m.next_attempt_at, m.id
        limit ${options.batch}`,
  );
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
      key: `dead-messages:${fresh.map((r) => r.key).join(",")}`.slice(0, 400),
    }));
  await markAlerted(
    tx,
    now,
    ENTITY,
    fresh.map((r) => ({ key: r.key, details: { channel: r.channel, template: r.template } })),
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
