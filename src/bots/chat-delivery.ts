import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import { intArray, textArray, ts } from "../db/params.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { createTurnBatcher } from "../lib/turn-batcher.ts";
import type { Logger } from "../logger.ts";
import { type Language, maskSecrets, type Params, type Signing } from "../messaging/render.ts";
import { openSecrets, retryDelayMs } from "../messaging/sms-worker.ts";
import { noticeContent, type TemplateMap, templateContent } from "./chat-notices.ts";
import { CHAT_CONTENT_TEMPLATE } from "./chat-outbox.ts";
import { type ChatContent, ChatSendError, type ChatSender } from "./chat-sender.ts";

/**
 * Sends the chat rows of `message_outbox`: menu answers (ready-made `content`) and notices (a
 * catalog template rendered in the recipient's language, as for SMS). Rows are claimed by one
 * statement and sent after it; a chat's rows go out in the order they were written.
 *
 * A notice that a chat cannot take (the person blocked the bot, WhatsApp's 24-hour window closed and
 * no approved template is configured, or its attempts ran out) becomes an SMS to the customer's
 * phone: the same row changes channel, so it is delivered once, one way or the other.
 */

/**
 * While a channel cannot send at all (`unavailable`), its messages wait without using up attempts,
 * tried again this often: a notice until it has waited `NOTICE_WAITS_FOR_CHANNEL_MS` (then it goes
 * by SMS: a receipt matters more than its channel), a menu answer until it is an hour old (a
 * reconnect within the hour still answers the person; later the answer would only confuse).
 */
export const CHANNEL_RETRY_MS = 30_000;
export const NOTICE_WAITS_FOR_CHANNEL_MS = 10 * 60_000;
export const ANSWER_WAITS_FOR_CHANNEL_MS = 60 * 60_000;

export interface ChatDeliveryOptions extends Signing {
  db: Db;
  clock: Clock;
  senders: readonly ChatSender[];
  logger?: Logger;
  /**
   * Channels that take free text only within this long of the person's last message (WhatsApp
   * Cloud API: 24 hours); outside it a notice goes as an approved template, or by SMS.
   */
  windows?: Partial<Record<ChatChannel, number>>;
  /** Approved templates by catalog template name (see `parseTemplateMap`, chat-notices.ts), per windowed channel. */
  templates?: Partial<Record<ChatChannel, TemplateMap>>;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  batchSize?: number;
  /** How many chats are sent to at once (each chat's own messages one after the other). */
  concurrency?: number;
  sendTimeoutMs?: number;
}

/** A row leased to this process: claimed by a pass, or written leased by the statement that queued it. */
export interface ClaimedRow extends Record<string, unknown> {
  id: number;
  channel: ChatChannel;
  recipient: string;
  language: Language;
  template: string;
  params: Params;
  content: ChatContent | null;
  fallback_recipient: string | null;
  attempts: number;
  last_inbound_at: Date | string | null;
  created_at: Date | string;
}

export interface ChatRunCounts {
  sent: number;
  retried: number;
  dead: number;
  /** Notices turned into SMS. */
  toSms: number;
}

interface SentRow {
  id: number;
  channel: ChatChannel;
  recipient: string;
  messageId: string;
  at: string;
}

const newCounts = (): ChatRunCounts => ({ sent: 0, retried: 0, dead: 0, toSms: 0 });

/** How long a claimed row stays leased: several send timeouts, so a lease outlives any send begun in it. */
export const chatLeaseMs = (options: Pick<ChatDeliveryOptions, "sendTimeoutMs">) =>
  4 * (options.sendTimeoutMs ?? 15_000);

/** Claims what is due and sends it (one pass). */
export async function deliverDueChats(options: ChatDeliveryOptions): Promise<ChatRunCounts> {
  const claimed = await claimDueChats(options);
  if (claimed.rows.length === 0) return newCounts();
  return createChatSending(options).send(claimed.rows, claimed.leaseUntil);
}

export async function claimDueChats(
  options: ChatDeliveryOptions,
): Promise<{ rows: ClaimedRow[]; leaseUntil: Date }> {
  const { db, clock } = options;
  const now = clock.now();
  const leaseUntil = new Date(now.getTime() + chatLeaseMs(options));
  const channels = options.senders.map((s) => s.channel as string);
  if (channels.length === 0) return { rows: [], leaseUntil };

  // A chat's rows are claimed oldest first, and a row only together with every earlier waiting row
  // of its chat, so a chat's messages never overtake each other (an answer of two messages goes out
  // in one pass). One statement and no lock: rows another pass holds are skipped, and the checks on a
  // row are made again on the row as it is now (a row another pass claimed, sent or put back since
  // this statement's snapshot is not due), so a pass whose snapshot predates another's work finds
  // the chat's earlier row missing from its candidates, and leaves the later ones alone.
  const claimed = await queryRows<ClaimedRow>(
    db,
    sql`with candidates as (
          select o.id, o.recipient, o.channel from message_outbox o
          where o.status = 'pending' and o.channel = any(${textArray(channels)})
            and o.next_attempt_at <= ${ts(now)}
          order by o.id
          limit ${options.batchSize ?? 200}
          for update of o skip locked
        ),
        due as (
          select c.id from candidates c
          where not exists (select 1 from message_outbox earlier
            where earlier.recipient = c.recipient and earlier.channel = c.channel
              and earlier.status = 'pending' and earlier.id < c.id
              and earlier.id not in (select id from candidates))
        )
        update message_outbox m set next_attempt_at = ${ts(leaseUntil)}
        from due
        where m.id = due.id
        returning m.id, m.channel, m.recipient, m.language, m.template, m.params, m.content,
          m.fallback_recipient, m.attempts, m.created_at,
          (select s.last_inbound_at from chat_sessions s
            where s.channel = m.channel and s.chat_id = m.recipient) as last_inbound_at`,
  );
  return { rows: claimed, leaseUntil };
}

/**
 * How long sends are gathered before one statement records them all. Under load a turn of the event
 * loop finishes only a few sends: recorded per turn, they cost a statement (and a wake-up of a
 * PostgreSQL backend competing with this process for the CPU) every few milliseconds. What waits on
 * the record is only a chat's next row, and a row sent meanwhile is kept by its lease.
 */
const RECORD_WINDOW_MS = 20;

/**
 * Sends rows leased to this process until `leaseUntil`, each chat's in id order, and records each
 * outcome. Sends that finish within `RECORD_WINDOW_MS` of one another are recorded by one statement.
 */
export function createChatSending(options: ChatDeliveryOptions) {
  const { db, clock } = options;
  const senders = new Map(options.senders.map((s) => [s.channel as string, s]));
  const sendTimeoutMs = options.sendTimeoutMs ?? 15_000;
  const markSent = createTurnBatcher(
    async (sent: SentRow[]) => {
      await db.execute(
        sql`with s as (
            select * from jsonb_to_recordset(${JSON.stringify(sent.map(({ messageId, ...row }) => ({ ...row, message_id: messageId })))}::jsonb)
              as s(id int, channel text, recipient text, message_id text, at timestamptz)
          )
          update message_outbox m set status = 'done', attempts = m.attempts + 1, last_error = null,
            sent_at = s.at, provider_message_id = s.message_id, channel = s.channel, recipient = s.recipient
          from s
          -- By the primary key, whatever the table's statistics said when the plan was made: a
          -- pending-only index would be read whole (a bitmap scan never marks the entries of rows
          -- already sent dead), and the table grows while a prepared statement keeps its plan.
          where m.id = any(array(select id from s)) and m.id = s.id
            and m.status is not distinct from 'pending'
            -- A notice turned into an SMS while it was being sent (the customer's phone changed,
            -- customer-edit.ts) went out all the same: it is recorded as sent where it went, and
            -- its SMS, which waits for this send's lease, is never sent.
            and (m.channel = s.channel or m.channel = 'sms')`,
      );
      return sent.map(() => undefined);
    },
    { windowMs: RECORD_WINDOW_MS },
  );
  /**
   * Puts rows back (due now) while they are still leased until `leaseUntil`: a row whose lease ran
   * out may already be another pass's, and is left to it.
   */
  const releaseLeased = async (ids: number[], leaseUntil: Date) => {
    if (ids.length === 0) return;
    await db.execute(
      sql`update message_outbox set next_attempt_at = ${ts(clock.now())}
          where id = any(${intArray(ids)}) and status = 'pending' and next_attempt_at = ${ts(leaseUntil)}`,
    );
  };
  return { send: sendLeased, release: releaseLeased };

  async function sendLeased(claimed: readonly ClaimedRow[], leaseUntil: Date): Promise<ChatRunCounts> {
    const counts = newCounts();
    const byChat = new Map<string, ClaimedRow[]>();
    for (const row of [...claimed].sort((a, b) => a.id - b.id)) {
      const key = `${row.channel}:${row.recipient}`;
      const rows = byChat.get(key);
      if (rows) rows.push(row);
      else byChat.set(key, [row]);
    }
    const chats = [...byChat.values()];
    // A row is sent only while this pass's lease surely outlives the send; the rest goes back.
    const leaseHolds = () => clock.now().getTime() + sendTimeoutMs < leaseUntil.getTime();
    const release = (ids: number[]) => releaseLeased(ids, leaseUntil);
    const deliverChat = async (rows: ClaimedRow[]) => {
      for (const [index, row] of rows.entries()) {
        if (!leaseHolds()) return release(rows.slice(index).map((r) => r.id));
        const sender = senders.get(row.channel);
        // A row leased for a channel this process does not send: back for a pass that does.
        if (!sender) return release(rows.slice(index).map((r) => r.id));
        const sent = await deliverOne(options, sender, row, counts, leaseHolds);
        if (sent !== null) {
          // Recorded at once, not at the end of the pass: a pass cut short re-sends nothing it sent.
          await markSent({
            id: row.id,
            channel: row.channel,
            recipient: row.recipient,
            messageId: sent,
            at: clock.now().toISOString(),
          });
          counts.sent++;
          continue;
        }
        // The chat's later rows wait behind this one (the claim's "earlier" rule keeps them back).
        return release(rows.slice(index + 1).map((r) => r.id));
      }
    };
    const workers = Array.from({ length: Math.min(options.concurrency ?? 32, chats.length) }, async () => {
      for (let rows = chats.shift(); rows; rows = chats.shift()) {
        // One chat's trouble (a database error recording it) is logged; the other chats go on.
        await deliverChat(rows).catch((error: unknown) =>
          options.logger?.error({ err: error }, "chat messages not recorded; they will be retried"),
        );
      }
    });
    await Promise.all(workers);
    return counts;
  }
}

/** Sends one row; returns the platform's message id, or null after recording why it was not sent. */
async function deliverOne(
  options: ChatDeliveryOptions,
  sender: ChatSender,
  row: ClaimedRow,
  counts: ChatRunCounts,
  /** Whether this pass's lease on the row surely outlives one more send. */
  leaseHolds: () => boolean,
): Promise<string | null> {
  const { db, clock } = options;
  const attempts = row.attempts + 1;
  const isNotice = row.template !== CHAT_CONTENT_TEMPLATE;
  let params: Params = row.params;
  const toSmsOrDead = async (reason: string) => {
    if (isNotice && row.fallback_recipient) {
      await db.execute(
        sql`update message_outbox set channel = 'sms', recipient = ${row.fallback_recipient}, attempts = 0,
              content = null, next_attempt_at = ${ts(clock.now())}, last_error = ${reason.slice(0, 500)}
            where id = ${row.id} and status = 'pending' and channel = ${row.channel}`,
      );
      counts.toSms++;
    } else {
      await db.execute(
        sql`update message_outbox set status = 'dead', attempts = ${attempts}, last_error = ${reason.slice(0, 500)}
            where id = ${row.id} and status = 'pending' and channel = ${row.channel}`,
      );
      counts.dead++;
    }
    options.logger?.warn({ messageId: row.id, channel: row.channel, reason }, "chat message not delivered");
  };
  try {
    let content: ChatContent;
    if (isNotice) {
      params = openSecrets(row.template, row.params);
      const prepared = noticeContent(options, row, params);
      if (typeof prepared === "string") {
        await toSmsOrDead(prepared);
        return null;
      }
      content = prepared;
    } else if (row.content) {
      content = row.content;
    } else {
      await toSmsOrDead("a chat row without content");
      return null;
    }
    const send = async (what: ChatContent) =>
      (
        await withTimeout(
          (signal) => sender.send(row.recipient, what, signal),
          options.sendTimeoutMs ?? 15_000,
        )
      ).messageId;
    try {
      return await send(content);
    } catch (error) {
      // The platform keeps the window by its own clock, which is not ours: free text it refuses as
      // outside goes once as the template.
      const closed = error instanceof ChatSendError && error.failure === "window" && isNotice;
      const template = closed && content.kind === "text" ? templateContent(options, row, params) : null;
      if (template === null) throw error;
      // A second send, and the first may have taken most of the lease: started past it, the row
      // could be claimed by another pass meanwhile and the template sent twice.
      if (!leaseHolds())
        throw new ChatSendError(
          "retry",
          "outside the window: the template waits for a pass with time for it",
        );
      return await send(template);
    }
  } catch (error) {
    const failure = error instanceof ChatSendError ? error.failure : "retry";
    const reason = maskSecrets(error instanceof Error ? error.message : String(error), row.template, params);
    // A wait that costs no attempt (the channel cannot send, or the platform said to slow down)
    // still ends: a notice goes by SMS, an answer too old to matter is given up.
    const waitsFree =
      failure === "unavailable" ||
      (failure === "retry" && error instanceof ChatSendError && !!error.retryAfterSeconds);
    const waited = clock.now().getTime() - new Date(row.created_at).getTime();
    if (waitsFree && waited >= (isNotice ? NOTICE_WAITS_FOR_CHANNEL_MS : ANSWER_WAITS_FOR_CHANNEL_MS)) {
      await toSmsOrDead(`${failure}: ${reason}`);
      return null;
    }
    if (failure === "unavailable") {
      await db.execute(
        sql`update message_outbox set last_error = ${reason.slice(0, 500)},
              next_attempt_at = ${ts(new Date(clock.now().getTime() + CHANNEL_RETRY_MS))}
            where id = ${row.id} and status = 'pending' and channel = ${row.channel}`,
      );
      counts.retried++;
      return null;
    }
    if (failure !== "retry" || attempts >= (options.maxAttempts ?? 6)) {
      await toSmsOrDead(`${failure}: ${reason}`);
      return null;
    }
    // The platform's own `retry_after` is exact; otherwise back off.
    const waitMs =
      error instanceof ChatSendError && error.retryAfterSeconds
        ? error.retryAfterSeconds * 1000
        : retryDelayMs(attempts, options.baseDelayMs ?? 5_000, options.maxDelayMs ?? 600_000);
    // A platform's "slow down" (retry_after) is not the message's failure: it costs no attempt.
    const counted = error instanceof ChatSendError && error.retryAfterSeconds ? row.attempts : attempts;
    await db.execute(
      sql`update message_outbox set attempts = ${counted}, last_error = ${reason.slice(0, 500)},
            next_attempt_at = ${ts(new Date(clock.now().getTime() + waitMs))}
          where id = ${row.id} and status = 'pending' and channel = ${row.channel}`,
    );
    counts.retried++;
    options.logger?.warn(
      { messageId: row.id, channel: row.channel, attempts, reason },
      "chat message retried",
    );
    return null;
  }
}

/**
 * `work` given `ms` to finish. When the time is up, the row is tried again later: the signal aborts
 * so the send does not go on (and land after the retry, out of the chat's order).
 */
function withTimeout<T>(work: (signal: AbortSignal) => Promise<T>, ms: number): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new ChatSendError("retry", `no answer within ${ms} ms`);
      controller.abort(error);
      reject(error);
    }, ms);
  });
  return Promise.race([work(controller.signal), timeout]).finally(() => clearTimeout(timer));
}
