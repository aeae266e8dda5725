import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { createTurnBatcher } from "../lib/turn-batcher.ts";
import { DEFAULT_LEASE_MS, type InboundRecord, storableJsonText } from "./chat-inbox.ts";
import {
  type ChatStep,
  QUEUED_ANSWERS,
  type QueuedAnswer,
  type SavedStep,
  STEP_INPUT_COLUMNS,
  savedWithAnswers,
  stepInput,
} from "./chat-save.ts";
import { type ChatState, chatStatesOf, type StateRow, stateOf } from "./chat-state.ts";

/**
 * A message not stored yet, answered from a chat state kept in memory (chat-known.ts): one statement
 * stores it and, when the state it was answered from still holds, saves the step with its answers.
 *
 * The message is stored before anything it leads to happens, as every message is: the answer was
 * made without acting on anything (the menu only read), and it is written in the statement that
 * stores the message, or not at all.
 */
export interface UnstoredStep {
  /** The step to save, as `saveChatSteps` takes it (its `inboxId` is not used). */
  step: ChatStep;
  /** The message, for chat_inbox. */
  record: InboundRecord;
  /** The version of the state the answer was made from (`ChatState.version.current`). */
  version: string;
}

export type UnstoredOutcome =
  /** Stored and saved: the message is handled, its answers are written. */
  | { kind: "saved"; saved: SavedStep }
  /** Already in the inbox: a redelivery, nothing was written. */
  | { kind: "repeated" }
  /**
   * Stored as handled, but another message of the chat was saved between the check and the save
   * (as when `saveChatSteps` finds the step taken): its answer is out of date.
   */
  | { kind: "overtaken" }
  /**
   * The state had changed: the message is stored, leased to the caller as `storeInbound` leaves it,
   * with the state as it now stands. The caller answers it from that state, as any stored message.
   */
  | { kind: "stored"; inboxId: number; state: ChatState };

/** `saveUnstoredSteps` for messages answered at the same time: one statement for a turn's messages. */
export function createUnstoredStepSaver(db: Db): (step: UnstoredStep) => Promise<UnstoredOutcome> {
  return createTurnBatcher((steps: UnstoredStep[]) => saveUnstoredSteps(db, steps));
}

/**
 * One statement for any number of messages of different chats (a chat's state is taken by one
 * message at a time, see `KnownChats.take`). A step is saved only when its message was new to the
 * inbox, the chat is still at the step it was answered at, and the rest of its state reads as the
 * version given; the message's inbox row is written as handled exactly then, and otherwise left
 * leased to the caller.
 */
export async function saveUnstoredSteps(db: Db, steps: readonly UnstoredStep[]): Promise<UnstoredOutcome[]> {
  if (steps.length === 0) return [];
  const input = storableJsonText(
    steps.map(({ step, record, version }, position) => ({
      ...stepInput(step, position),
      inbox_channel: record.channel,
      external_id: record.externalId,
      received_at: (record.receivedAt ?? step.at).toISOString(),
      payload: record.payload,
      version,
      inbox_lease: new Date(step.at.getTime() + DEFAULT_LEASE_MS).toISOString(),
    })),
  );
  const rows = await queryRows<
    QueuedAnswer & {
      kind: "saved" | "queued" | "stored";
      position: number | null;
      status: string | null;
      state: StateRow | string | null;
    }
  >(
    db,
    sql`with input as (
          select * from jsonb_to_recordset(${input}::jsonb)
            as i(${STEP_INPUT_COLUMNS}, inbox_channel text, external_id text, received_at timestamptz,
              payload jsonb, version text, inbox_lease timestamptz)
        ),
        states as (${chatStatesOf(sql`(select position, channel, chat_id, null::text as phone, false as known
                                        from input) as k`)}),
        checked as (
          select i.position, coalesce(st.step = i.expected_step and st.version = i.version, false) as holds
          from input i left join states st on st.position = i.position
        ),
        stored as (
          insert into chat_inbox (channel, external_id, chat_id, payload, status, attempts, lease_until,
            received_at, handled_at)
          select i.inbox_channel, i.external_id, i.chat_id, i.payload,
                 case when c.holds then 'done' else 'pending' end, case when c.holds then 1 else 0 end,
                 case when c.holds then null else i.inbox_lease end, i.received_at,
                 case when c.holds then i.at end
          from input i join checked c on c.position = i.position
          order by i.position
          on conflict (channel, external_id) do nothing
          returning id, channel, external_id, status
        ),
        -- Only a message new to the inbox, and written there as handled, moves its chat on.
        saved as (
          update chat_sessions s set session_key = i.session_key, inputs = i.inputs, language = i.language,
            last_activity_at = i.at, last_inbound_at = greatest(s.last_inbound_at, i.inbound_at),
            step = s.step + 1
          from input i
          join stored n on n.channel = i.inbox_channel and n.external_id = i.external_id and n.status = 'done'
          where s.channel = i.channel and s.chat_id = i.chat_id and s.step = i.expected_step
          returning i.position
        ),
        ${QUEUED_ANSWERS}
        select 'saved' as kind, position, null::int as id, null as channel, null as recipient,
               null::boolean as leased, null as status, null::jsonb as state
        from saved
        union all
        select 'queued', null, id, channel, recipient, leased, null, null from queued
        union all
        select 'stored', i.position, n.id, null, null, null, n.status,
               case when n.status <> 'done' then to_jsonb(st) end
        from stored n join input i on i.inbox_channel = n.channel and i.external_id = n.external_id
        left join states st on st.position = i.position`,
  );
  const saved = new Set<number>();
  const stored = new Map<number, (typeof rows)[number]>();
  for (const row of rows) {
    if (row.kind === "saved") saved.add(Number(row.position));
    else if (row.kind === "stored") stored.set(Number(row.position), row);
  }
  const answered = savedWithAnswers(
    steps.map((s) => s.step),
    saved,
    rows.filter((row) => row.kind === "queued"),
  );
  return steps.map((_, position): UnstoredOutcome => {
    const row = stored.get(position);
    if (!row) return { kind: "repeated" };
    const savedStep = answered.get(position);
    if (savedStep) return { kind: "saved", saved: savedStep };
    if (row.status === "done") return { kind: "overtaken" };
    const state = typeof row.state === "string" ? (JSON.parse(row.state) as StateRow) : row.state;
    return { kind: "stored", inboxId: Number(row.id), state: stateOf(state ?? undefined) };
  });
}
