import { sql } from "drizzle-orm";
import { z } from "zod";
import type { Clock } from "../../clock.ts";
import { type Db, queryRows } from "../../db/client.ts";
import { ts } from "../../db/params.ts";
import type { InboundRecord } from "../chat-inbox.ts";
import { changeValuesOf } from "./inbound.ts";

/**
 * Meta answers a send 200 with a message id and may report only later, in a webhook's
 * `value.statuses`, that the message failed (131026 undeliverable, 131047 outside the window…).
 * Such a report is stored in chat_inbox like a message, then turns the notice it names into an SMS.
 */

export interface FailedStatus {
  /** Meta's id of the message we sent (`wamid…`), as `provider_message_id` holds it. */
  messageId: string;
  code: number | null;
  title: string;
}

const statusSchema = z.object({
  id: z.string().min(1).max(256),
  status: z.string(),
  errors: z
    .array(
      z.object({ code: z.number().optional(), title: z.string().optional(), message: z.string().optional() }),
    )
    .optional(),
});

/**
 * The `failed` statuses of a webhook body sent to `phoneNumberId`, read as leniently as its messages
 * (inbound.ts): what cannot be read is skipped, nothing throws. Other statuses (sent, delivered,
 * read) change nothing here and are left out.
 */
export function failedStatusesOf(body: unknown, phoneNumberId: string): FailedStatus[] {
  const found: FailedStatus[] = [];
  for (const value of changeValuesOf(body, phoneNumberId)) {
    for (const rawStatus of Array.isArray(value.statuses) ? value.statuses : []) {
      const status = statusSchema.safeParse(rawStatus);
      if (!status.success || status.data.status !== "failed") continue;
      const error = status.data.errors?.[0];
      found.push({
        messageId: status.data.id,
        code: error?.code ?? null,
        title: (error?.title ?? error?.message ?? "failed").slice(0, 200),
      });
    }
  }
  return found;
}

/**
 * The inbox record of a failed status: keyed by message id and status, so a redelivery is dropped.
 * Its chat is the message id, not the person: a status is no turn in a conversation, and must not
 * be superseded by (or hold back) the person's messages in the inbox's retry rules.
 */
export const failedStatusRecord = (
  channel: InboundRecord["channel"],
  status: FailedStatus,
): InboundRecord => ({
  channel,
  externalId: `status:${status.messageId}:failed`,
  chatId: status.messageId,
  payload: { failed: status },
});

export const failedStatusOf = (payload: Record<string, unknown>): FailedStatus | null =>
  (payload.failed as FailedStatus | undefined) ?? null;

/**
 * A sent row that Meta reports failed: a notice (it has a fallback phone) becomes an SMS, once, by a
 * conditional update a redelivered report no longer matches; a menu answer is recorded dead. Throws
 * while no row holds the id yet (the send's record may still be on its way), so the inbox retries.
 * The channel is written out, not a parameter, so that every plan can use the index kept for these ids.
 *
 * The report's inbox record is marked handled by the same statement, so a process that stops after
 * it leaves nothing to retry. A notice turned into an SMS no longer holds the id on this channel
 * (the SMS gateway's id replaces it once sent): a report handled again all the same (by a second
 * handler, or one that took it before that mark) knows it by its handled record, and changes nothing.
 */
export async function handleFailedStatus(
  deps: { db: Db; clock: Clock },
  status: FailedStatus,
): Promise<{ toSms: number }> {
  const reason = `failed after sending: ${status.code ?? "?"} ${status.title}`.slice(0, 500);
  const record = failedStatusRecord("whatsapp_cloud", status).externalId;
  const now = ts(deps.clock.now());
  const [counts] = await queryRows<{ to_sms: number; known: boolean }>(
    deps.db,
    sql`with to_sms as (
          update message_outbox set channel = 'sms', recipient = fallback_recipient, status = 'pending',
            attempts = 0, content = null, sent_at = null, next_attempt_at = ${now}, last_error = ${reason}
          where provider_message_id = ${status.messageId} and channel = 'whatsapp_cloud' and status = 'done'
            and fallback_recipient is not null
          returning id
        ),
        dead as (
          update message_outbox set status = 'dead', last_error = ${reason}
          where provider_message_id = ${status.messageId} and channel = 'whatsapp_cloud' and status = 'done'
            and fallback_recipient is null
          returning id
        ),
        handled as (
          update chat_inbox set status = 'done', attempts = attempts + 1, lease_until = null,
            last_error = null, handled_at = ${now}
          where channel = 'whatsapp_cloud' and external_id = ${record} and status <> 'done'
            and (exists (select 1 from to_sms) or exists (select 1 from dead))
        )
        select (select count(*)::int from to_sms) as to_sms,
          (select count(*)::int from dead) > 0
            or exists (select 1 from message_outbox
              where provider_message_id = ${status.messageId} and channel = 'whatsapp_cloud')
            or exists (select 1 from chat_inbox
              where channel = 'whatsapp_cloud' and external_id = ${record} and status = 'done') as known`,
  );
  if (!counts?.known) throw new Error(`no message sent as ${status.messageId} yet`);
  return { toSms: counts.to_sms };
}
