import { sql } from "drizzle-orm";
import { type Clock, DAY, HOUR } from "../clock.ts";
import { type Executor, queryRows } from "../db/client.ts";
import { ts } from "../db/params.ts";
import type { ScheduledJob } from "../jobs/scheduler.ts";

/** Handled chat messages are kept this long (a redelivery after it would be handled again). */
export const CHAT_INBOX_KEEP_MS = 2 * DAY;

/** A notice no chat worker has sent in this long goes by SMS (its channel may have been turned off). */
export const CHAT_NOTICE_PATIENCE_MS = HOUR;

export async function purgeChatInbox(tx: Executor, now: Date, keepMs = CHAT_INBOX_KEEP_MS) {
  const removed = await queryRows(
    tx,
    // Handled rows after two days; rows given up (failed, no attempt left) after a week, so what
    // they hold (a person's words) is not kept for ever either.
    sql`delete from chat_inbox
        where (status = 'done' and received_at < ${ts(new Date(now.getTime() - keepMs))})
           or (status <> 'done' and attempts >= 5 and received_at < ${ts(new Date(now.getTime() - 7 * DAY))})
        returning id`,
  );
  return { removed: removed.length };
}

/**
 * Notices waiting on a chat channel that nothing sends (WhatsApp Web turned off after a customer
 * chose it, a bot token removed) become SMS: a notice is delayed, never lost.
 */
export async function sendStaleChatNoticesBySms(
  tx: Executor,
  now: Date,
  patienceMs = CHAT_NOTICE_PATIENCE_MS,
) {
  const moved = await queryRows(
    tx,
    sql`update message_outbox set channel = 'sms', recipient = fallback_recipient, content = null, attempts = 0,
          next_attempt_at = ${ts(now)}, last_error = 'no chat delivery within the hour: sent by SMS'
        where status = 'pending' and channel <> 'sms' and fallback_recipient is not null
          and created_at < ${ts(new Date(now.getTime() - patienceMs))}
          -- Not one a chat worker holds now (its lease is in next_attempt_at).
          and next_attempt_at <= ${ts(now)}
        returning id`,
  );
  return { moved: moved.length };
}

/** The chats' housekeeping, for the scheduler. */
export function chatJobs(clock: Clock): ScheduledJob[] {
  return [
    { name: "chat-inbox-purge", schedule: "29 * * * *", run: (tx) => purgeChatInbox(tx, clock.now()) },
    {
      name: "chat-notices-to-sms",
      schedule: "*/5 * * * *",
      run: (tx) => sendStaleChatNoticesBySms(tx, clock.now()),
    },
  ];
}
