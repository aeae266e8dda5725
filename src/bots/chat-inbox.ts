import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import { ts } from "../db/params.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { createTurnBatcher } from "../lib/turn-batcher.ts";
import { storableText } from "../lib/well-formed.ts";
import type { Logger } from "../logger.ts";
import { type ChatState, chatStatesOf, type StateRow, stateOf } from "./chat-state.ts";

/**
 * What a chat webhook delivered is stored (`chat_inbox`) before it is handled. The unique key drops a
 * redelivery; a row whose handling failed, or was cut short by a crash, is handled again by the retry
 * loop. The row is leased to whoever handles it, so a retry never runs beside the first attempt.
 */

export interface InboundRecord {
  channel: ChatChannel;
  externalId: string;
  chatId: string;
  payload: Record<string, unknown>;
}

export interface InboxRow {
  id: number;
  chatId: string;
  payload: Record<string, unknown>;
}

/** A row just stored, with its chat's state as it stood (the chat menu reads it next). */
export interface StoredRow extends InboxRow {
  state: ChatState;
}

/** Every string of a payload as PostgreSQL's JSON can hold it (see well-formed.ts). */
const storable = (_key: string, value: unknown) => (typeof value === "string" ? storableText(value) : value);

/**
 * `value` as JSON text PostgreSQL can store. JSON.stringify writes U+0000 and a lone surrogate half
 * only as the escapes `\u0000` and `\udXXX`: text with neither needs no change, and the replacer
 * (a call per value, most of the cost for a whole Telegram update) runs only when one is there.
 */
function storableJsonText(value: unknown): string {
  const text = JSON.stringify(value);
  return /\\u(?:0000|d[89a-f])/i.test(text) ? JSON.stringify(value, storable) : text;
}

/** A first attempt may take this long before the retry loop takes the row over. */
const DEFAULT_LEASE_MS = 60_000;

/**
 * Stores what arrived and returns the rows new to the inbox, leased to the caller to handle now
 * (a redelivery returns nothing). One statement, whatever the count.
 */
export async function storeInbound(
  db: Db,
  now: Date,
  records: readonly InboundRecord[],
  leaseMs = DEFAULT_LEASE_MS,
): Promise<InboxRow[]> {
  if (records.length === 0) return [];
  const stored = await insertInbound(db, now, records, leaseMs);
  return stored.map((s) => s.row).sort((a, b) => a.id - b.id);
}

/**
 * `storeInbound` for callers that each store one record as it arrives: records stored in the same
 * turn of the event loop go in one statement (see turn-batcher.ts), which also reads each new row's
 * chat state (its chat_id on its channel, the phone from the chat's link; see chat-state.ts), so the
 * menu needs no read of its own. Resolves with the record's row, or undefined for a redelivery.
 */
export function createInboxStore(
  db: Db,
  clock: Clock,
): (record: InboundRecord) => Promise<StoredRow | undefined> {
  return createTurnBatcher(async (records: InboundRecord[]) => {
    const rows = await insertInbound(db, clock.now(), records, DEFAULT_LEASE_MS, true);
    const byKey = new Map(rows.map((row) => [`${row.channel}\n${row.externalId}`, row.row as StoredRow]));
    // The same update twice in one batch is one row: the first copy gets it, the other is a redelivery.
    return records.map((record) => {
      const key = `${record.channel}\n${record.externalId}`;
      const row = byKey.get(key);
      byKey.delete(key);
      return row;
    });
  });
}

/**
 * One statement for any number of records; each new row comes back with its key, and with
 * `withState` its chat's state.
 */
async function insertInbound(
  db: Db,
  now: Date,
  records: readonly InboundRecord[],
  leaseMs: number,
  withState = false,
) {
  const lease = new Date(now.getTime() + leaseMs);
  const insert = sql`insert into chat_inbox (channel, external_id, chat_id, payload, lease_until, received_at)
        select r.value->>'channel', r.value->>'externalId', r.value->>'chatId', r.value->'payload',
               ${ts(lease)}, ${ts(now)}
        from jsonb_array_elements(${storableJsonText(records)}::jsonb) with ordinality as r(value, position)
        order by r.position
        on conflict (channel, external_id) do nothing
        returning id, channel, external_id, chat_id, payload`;
  type Stored = {
    id: number;
    channel: string;
    external_id: string;
    chat_id: string;
    payload: Record<string, unknown>;
  };
  const rows = await queryRows<Stored & Partial<StateRow>>(
    db,
    withState
      ? sql`with stored as (${insert}),
            states as (${chatStatesOf(sql`(select id as position, channel, chat_id, null::text as phone,
                                             false as known from stored) as k`)})
            select stored.*, states.* from stored left join states on states.position = stored.id`
      : insert,
  );
  return rows.map((r) => ({
    channel: r.channel,
    externalId: r.external_id,
    row: {
      id: r.id,
      chatId: r.chat_id,
      payload: r.payload,
      ...(withState ? { state: stateOf(r as StateRow) } : {}),
    } satisfies InboxRow,
  }));
}

export async function markHandled(db: Db, id: number, now: Date): Promise<void> {
  await db.execute(
    sql`update chat_inbox set status = 'done', attempts = attempts + 1, lease_until = null, last_error = null,
          handled_at = ${ts(now)} where id = ${id} and status <> 'done'`,
  );
}

export async function markFailed(db: Db, id: number, now: Date, error: unknown): Promise<void> {
  const message = error instanceof Error ? error.message : String(error);
  await db.execute(
    sql`update chat_inbox set status = 'failed', attempts = attempts + 1, lease_until = null,
          last_error = ${message.slice(0, 500)}, handled_at = ${ts(now)} where id = ${id} and status <> 'done'`,
  );
}

/** Handles one stored row and records the outcome; never throws (the outcome is in the row). */
export async function handleStored(
  deps: { db: Db; clock: Clock; logger?: Logger },
  row: InboxRow,
  handle: (row: InboxRow) => Promise<void>,
): Promise<boolean> {
  try {
    await handle(row);
  } catch (error) {
    deps.logger?.error({ err: error, inboxId: row.id }, "chat message not handled; it will be retried");
    await markFailed(deps.db, row.id, deps.clock.now(), error).catch(() => {});
    return false;
  }
  // Handled: a failure to record it now must not make it count as unhandled (it would run twice).
  await markHandled(deps.db, row.id, deps.clock.now()).catch((error: unknown) =>
    deps.logger?.error({ err: error, inboxId: row.id }, "chat message handled but not marked"),
  );
  return true;
}

/**
 * Rows of `channel` left unhandled (failed, or leased by an attempt that never finished) with
 * attempts left, leased to the caller, oldest first.
 */
export async function claimUnhandled(
  db: Db,
  now: Date,
  options: { channel: ChatChannel; maxAttempts?: number; limit?: number; leaseMs?: number },
): Promise<InboxRow[]> {
  const lease = new Date(now.getTime() + (options.leaseMs ?? DEFAULT_LEASE_MS));
  // A message the same chat has since sent another after, which was handled, is not handled any
  // more: its answer was meant for a screen the person no longer sees (a typed "1" would pick
  // something on the new one).
  await db.execute(
    sql`update chat_inbox i set status = 'done', lease_until = null, handled_at = ${ts(now)},
          last_error = 'superseded: a later message of this chat was handled'
        where i.channel = ${options.channel} and i.status <> 'done'
          and (i.lease_until is null or i.lease_until <= ${ts(now)})
          and exists (select 1 from chat_inbox later where later.channel = i.channel
                        and later.chat_id = i.chat_id and later.id > i.id and later.status = 'done')`,
  );
  const rows = await queryRows<{ id: number; chat_id: string; payload: Record<string, unknown> }>(
    db,
    sql`update chat_inbox i set lease_until = ${ts(lease)}
        from (select id from chat_inbox
              where channel = ${options.channel} and status <> 'done' and attempts < ${options.maxAttempts ?? 5}
                and (lease_until is null or lease_until <= ${ts(now)})
              order by id limit ${options.limit ?? 50}
              for update skip locked) due
        where i.id = due.id
        returning i.id, i.chat_id, i.payload`,
  );
  return rows.map((r) => ({ id: r.id, chatId: r.chat_id, payload: r.payload })).sort((a, b) => a.id - b.id);
}

/** One retry pass: handles what `claimUnhandled` gives, in order. Returns how many were handled. */
export async function retryUnhandled(
  deps: { db: Db; clock: Clock; logger?: Logger },
  channel: ChatChannel,
  handle: (row: InboxRow) => Promise<void>,
): Promise<number> {
  const rows = await claimUnhandled(deps.db, deps.clock.now(), { channel });
  let handled = 0;
  for (const row of rows) if (await handleStored(deps, row, handle)) handled++;
  return handled;
}

/** Runs `retryUnhandled` every `intervalMs` until stopped. */
export function startInboxRetry(
  deps: { db: Db; clock: Clock; logger?: Logger },
  channel: ChatChannel,
  handle: (row: InboxRow) => Promise<void>,
  intervalMs = 30_000,
): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = retryUnhandled(deps, channel, handle)
      .catch((error: unknown) => deps.logger?.error({ err: error, channel }, "chat inbox retry failed"))
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
