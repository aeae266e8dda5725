import { sql } from "drizzle-orm";
import { type Db, type Executor, queryRows } from "../db/client.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { createTurnBatcher } from "../lib/turn-batcher.ts";
import type { Language } from "../menu/types.ts";
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
  sessionKey: string;
  inputs: string[];
  language: Language | null;
  at: Date;
  messages: ChatOutgoing[];
  /** The chat_inbox row the input came in. */
  inboxId: number | null;
}

/**
 * Saves steps if nobody else did in between (the step each read is still there); returns, in order,
 * whether each was saved (false: another message of that chat won). One statement for any number of
 * chats; two steps of one chat are saved one after the other, in the order given.
 */
export async function saveChatSteps(db: Db, steps: readonly ChatStep[]): Promise<boolean[]> {
  const chats = new Set(steps.map((step) => `${step.channel}\n${step.chatId}`));
  // Several statements are one transaction: a batch changes everything or nothing (turn-batcher.ts
  // runs the steps of a failed batch again, one by one).
  return chats.size === steps.length
    ? saveInRounds(db, steps)
    : db.transaction((tx) => saveInRounds(tx, steps));
}

async function saveInRounds(db: Executor, steps: readonly ChatStep[]): Promise<boolean[]> {
  const saved = new Array<boolean>(steps.length).fill(false);
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
    for (const [index, entry] of now.entries()) saved[entry.position] = won.has(index);
    pending = later;
  }
  return saved;
}

/** `saveChatSteps` for steps of different chats; returns the indexes of those saved. */
async function saveDistinctChats(db: Executor, steps: readonly ChatStep[]): Promise<Set<number>> {
  const input = JSON.stringify(
    steps.map((step, position) => ({
      position,
      channel: step.channel,
      chat_id: step.chatId,
      expected_step: step.expectedStep,
      session_key: step.sessionKey,
      inputs: step.inputs,
      language: step.language,
      at: step.at.toISOString(),
      // Rows come out of the select in order, so their ids (and so their sending order) follow it.
      messages: step.messages.map((m) => ({
        channel: m.channel,
        to: m.to,
        language: m.language,
        content: m.content,
      })),
      inbox_id: step.inboxId,
    })),
  );
  const rows = await queryRows<{ position: number }>(
    db,
    sql`with input as (
          select * from jsonb_to_recordset(${input}::jsonb) as i(position int, channel text, chat_id text,
            expected_step int, session_key text, inputs jsonb, language text, at timestamptz, messages jsonb,
            inbox_id int)
        ),
        updated as (
          update chat_sessions s set session_key = i.session_key, inputs = i.inputs, language = i.language,
            last_activity_at = i.at, step = s.step + 1
          from input i
          where i.expected_step is not null and s.channel = i.channel and s.chat_id = i.chat_id
            and s.step = i.expected_step
          returning i.position
        ),
        inserted as (
          insert into chat_sessions (channel, chat_id, session_key, inputs, language, step, last_activity_at)
          select i.channel, i.chat_id, i.session_key, i.inputs, i.language, 1, i.at
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
        queued as (
          insert into message_outbox (channel, recipient, language, template, content, next_attempt_at, created_at)
          select m.value->>'channel', m.value->>'to', m.value->>'language', ${CHAT_CONTENT_TEMPLATE},
                 m.value->'content', i.at, i.at
          from saved v join input i on i.position = v.position,
            jsonb_array_elements(i.messages) with ordinality as m(value, n)
          order by i.position, m.n
          returning 1
        ),
        handled as (
          update chat_inbox b set status = 'done', attempts = b.attempts + 1, lease_until = null,
            last_error = null, handled_at = i.at
          from saved v join input i on i.position = v.position
          where b.id = i.inbox_id
        )
        select position from saved`,
  );
  return new Set(rows.map((row) => Number(row.position)));
}

/** `saveChatSteps` for messages handled at the same time: steps saved in one turn go together. */
export function createChatStepSaver(db: Db): (step: ChatStep) => Promise<boolean> {
  return createTurnBatcher((steps: ChatStep[]) => saveChatSteps(db, steps));
}
