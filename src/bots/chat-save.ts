import { sql } from "drizzle-orm";
import { type Db, type Executor, queryRows } from "../db/client.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { createTurnBatcher } from "../lib/turn-batcher.ts";
import type { Language } from "../menu/types.ts";
import type { ClaimedRow } from "./chat-delivery.ts";
import { CHAT_CONTENT_TEMPLATE, type ChatOutgoing } from "./chat-outbox.ts";

/**
 * A chat's new place in the menu, saved with its answers and its inbox mark in one statement, so an
 * answer is queued, and the message counts as handled, exactly when its input counted.
 */
export interface ChatStep {
  channel: ChatChannel;
  chatId: string;
  /** The step the chat was read at; null: the chat had no session yet. */
  expectedStep: number | null;
  /** The step this saves: `expectedStep + 1`, or a new session's first (`firstChatStep`). */
  step: number;
  sessionKey: string;
  inputs: string[];
  language: Language | null;
  at: Date;
  /**
   * When the person sent the input (default `at`): the chat's `last_inbound_at`, which a message sent
   * earlier than the newest one recorded (delivered late, out of order) never moves back.
   */
  inboundAt?: Date;
  messages: ChatOutgoing[];
  /** The chat_inbox row the input came in. */
  inboxId: number | null;
  /**
   * The caller sends the answers itself (the chat delivery worker's `deliver`): they are written
   * leased to it until then, unless an earlier message of the chat still waits (they wait behind it).
   */
  leaseUntil?: Date | null;
}

export interface SavedStep {
  /** False: another message of that chat won; nothing was written. */
  saved: boolean;
  /** The answers written leased to the caller, in order (see `leaseUntil`). */
  leased: ClaimedRow[];
}

const notSaved = (): SavedStep => ({ saved: false, leased: [] });

/** Seconds from this instant to chat steps' origin; a step is an int, so good until 2094. */
const STEP_ORIGIN_MS = Date.UTC(2026, 0, 1);

/**
 * A new chat session's first step: the seconds since STEP_ORIGIN_MS, not 1. A session's steps only
 * grow, and its row goes after days of idleness (or when the chat is unlinked): a button left on a
 * screen of the row before carries a step the new row has long passed, so it is refused as out of
 * date, never taken for a choice on whatever screen the new conversation shows at that number.
 */
export const firstChatStep = (at: Date): number =>
  Math.max(1, Math.floor((at.getTime() - STEP_ORIGIN_MS) / 1000));

/**
 * Saves steps if nobody else did in between (the step each read is still there); returns, in order,
 * whether each was saved (false: another message of that chat won) and the answers leased to the
 * caller. One statement for any number of chats; two steps of one chat are saved one after the
 * other, in the order given.
 */
export async function saveChatSteps(db: Db, steps: readonly ChatStep[]): Promise<SavedStep[]> {
  const chats = new Set(steps.map((step) => `${step.channel}\n${step.chatId}`));
  // Several statements are one transaction: a batch changes everything or nothing (turn-batcher.ts
  // runs the steps of a failed batch again, one by one).
  return chats.size === steps.length
    ? saveInRounds(db, steps)
    : db.transaction((tx) => saveInRounds(tx, steps));
}

async function saveInRounds(db: Executor, steps: readonly ChatStep[]): Promise<SavedStep[]> {
  const saved = steps.map(notSaved);
  let pending = steps.map((step, position) => ({ step, position }));
  while (pending.length > 0) {
    const seen = new Set<string>();
    const now: typeof pending = [];
    const later: typeof pending = [];
    for (const entry of pending) {
      const key = `${entry.step.channel}\n${entry.step.chatId}`;
      (seen.has(key) ? later : now).push(entry);
      seen.add(key);
    }
    const won = await saveDistinctChats(
      db,
      now.map((entry) => entry.step),
    );
    for (const [index, entry] of now.entries()) saved[entry.position] = won.get(index) ?? notSaved();
    pending = later;
  }
  return saved;
}

/** `saveChatSteps` for steps of different chats; returns those saved, by index. */
async function saveDistinctChats(db: Executor, steps: readonly ChatStep[]): Promise<Map<number, SavedStep>> {
  const input = JSON.stringify(
    steps.map((step, position) => ({
      position,
      channel: step.channel,
      chat_id: step.chatId,
      expected_step: step.expectedStep,
      step: step.step,
      session_key: step.sessionKey,
      inputs: step.inputs,
      language: step.language,
      at: step.at.toISOString(),
      inbound_at: (step.inboundAt ?? step.at).toISOString(),
      // Rows come out of the select in order, so their ids (and so their sending order) follow it.
      messages: step.messages.map((m) => ({
        channel: m.channel,
        to: m.to,
        language: m.language,
        content: m.content,
      })),
      inbox_id: step.inboxId,
      lease_until: step.leaseUntil?.toISOString() ?? null,
    })),
  );
  const rows = await queryRows<{
    position: number | null;
    id: number | null;
    channel: string | null;
    recipient: string | null;
    leased: boolean | null;
  }>(
    db,
    sql`with input as (
          select * from jsonb_to_recordset(${input}::jsonb) as i(position int, channel text, chat_id text,
            expected_step int, step int, session_key text, inputs jsonb, language text, at timestamptz,
            inbound_at timestamptz, messages jsonb, inbox_id int, lease_until timestamptz)
        ),
        updated as (
          update chat_sessions s set session_key = i.session_key, inputs = i.inputs, language = i.language,
            last_activity_at = i.at, last_inbound_at = greatest(s.last_inbound_at, i.inbound_at),
            step = s.step + 1
          from input i
          where i.expected_step is not null and s.channel = i.channel and s.chat_id = i.chat_id
            and s.step = i.expected_step
          returning i.position
        ),
        inserted as (
          insert into chat_sessions (channel, chat_id, session_key, inputs, language, step, last_activity_at,
            last_inbound_at)
          select i.channel, i.chat_id, i.session_key, i.inputs, i.language, i.step, i.at, i.inbound_at
          from input i where i.expected_step is null
          on conflict do nothing
          returning channel, chat_id
        ),
        saved as (
          select position from updated
          union all
          select i.position from inserted n
          join input i on i.channel = n.channel and i.chat_id = n.chat_id and i.expected_step is null
        ),
        -- The chats with a message still waiting: one probe of the pending index per chat (a lateral
        -- join cannot be hashed into a read of every pending row).
        waiting as (
          select t.channel, t.recipient
          from (select distinct m.value->>'channel' as channel, m.value->>'to' as recipient
                from input i, jsonb_array_elements(i.messages) as m(value)
                where i.lease_until is not null) t
          cross join lateral (select 1 from message_outbox e
            where e.status = 'pending' and e.recipient = t.recipient and e.channel = t.channel limit 1) e
        ),
        queued as (
          insert into message_outbox (channel, recipient, language, template, content, next_attempt_at, created_at)
          select m.value->>'channel', m.value->>'to', m.value->>'language', ${CHAT_CONTENT_TEMPLATE},
                 m.value->'content',
                 -- Leased to the caller unless the chat has a message still waiting: this one waits behind it.
                 case when i.lease_until is not null and not exists (select 1 from waiting w
                        where w.recipient = m.value->>'to' and w.channel = m.value->>'channel')
                      then i.lease_until else i.at end,
                 i.at
          from saved v join input i on i.position = v.position,
            jsonb_array_elements(i.messages) with ordinality as m(value, n)
          order by i.position, m.n
          returning id, channel, recipient, next_attempt_at > created_at as leased
        ),
        handled as (
          update chat_inbox b set status = 'done', attempts = b.attempts + 1, lease_until = null,
            last_error = null, handled_at = i.at
          from saved v join input i on i.position = v.position
          where b.id = i.inbox_id
        )
        select position, null::int as id, null as channel, null as recipient, null::boolean as leased from saved
        union all
        select null, id, channel, recipient, leased from queued`,
  );
  const result = new Map<number, SavedStep>();
  for (const row of rows)
    if (row.position !== null) result.set(Number(row.position), { saved: true, leased: [] });
  // Each chat's answers, in the order written (the rows of one recipient come out of the select in
  // the order of its step's messages, and take ids in that order).
  const queued = new Map<string, typeof rows>();
  for (const row of rows.filter((r) => r.id !== null).sort((a, b) => Number(a.id) - Number(b.id))) {
    const key = `${row.channel}\n${row.recipient}`;
    const chat = queued.get(key);
    if (chat) chat.push(row);
    else queued.set(key, [row]);
  }
  for (const [position, step] of steps.entries()) {
    const saved = result.get(position);
    if (!saved) continue;
    for (const message of step.messages) {
      const row = queued.get(`${message.channel}\n${message.to}`)?.shift();
      if (row?.leased && step.leaseUntil)
        saved.leased.push({
          id: Number(row.id),
          channel: message.channel,
          recipient: message.to,
          language: message.language,
          template: CHAT_CONTENT_TEMPLATE,
          params: {},
          content: message.content,
          fallback_recipient: null,
          attempts: 0,
          last_inbound_at: step.inboundAt ?? step.at,
          created_at: step.at,
        });
    }
  }
  return result;
}

/** `saveChatSteps` for messages handled at the same time: steps saved in one turn go together. */
export function createChatStepSaver(db: Db): (step: ChatStep) => Promise<SavedStep> {
  return createTurnBatcher((steps: ChatStep[]) => saveChatSteps(db, steps));
}
