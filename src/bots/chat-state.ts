import { type SQL, sql } from "drizzle-orm";
import { chooseNoticeChannel } from "../billing/chat-links.ts";
import { type Db, queryRows } from "../db/client.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { createTurnBatcher } from "../lib/turn-batcher.ts";
import type { LoadedUser } from "../menu/services.ts";
import type { Language, Outcome, ShownPlans } from "../menu/types.ts";

/**
 * Everything a chat message needs read before the menu runs, in one statement: the chat's place in
 * the menu, the phone it speaks for (a linked customer's, else the phone it shared as a visitor),
 * that phone's customer, and what the current menu session recorded. A chat answers hundreds of
 * messages a second; four reads each would be most of its cost, and messages handled together are
 * read together (`createChatStateReader`).
 */

export interface ChatState {
  session: {
    sessionKey: string;
    inputs: string[];
    language: Language | null;
    step: number;
    lastActivityAt: Date;
  } | null;
  /** The phone the chat speaks for; null: a visitor who has not shared one. */
  phone: string | null;
  /** The chat is linked to a customer (chat_links). */
  linked: boolean;
  customer: { id: number; accountNumber: string; name: string; language: Language } | null;
  /** Where results of that phone's actions go now (chat_reply_routes), if anywhere. */
  replyRoute: { channel: string; chatId: string; until: Date } | null;
  /** The menu session's own row (channel_sessions), when it continues. */
  menuSession: {
    language: Language | null;
    effects: Record<string, Outcome | "pending">;
    visitor: boolean;
    /** The plan lists the session was shown (MenuSession.plans). */
    plans: ShownPlans;
  } | null;
}

interface Row extends Record<string, unknown> {
  session_key: string | null;
  inputs: string[] | string | null;
  chat_language: Language | null;
  step: number | null;
  last_activity_at: Date | string | null;
  phone: string | null;
  linked: boolean | null;
  customer_id: number | null;
  account_number: string | null;
  name: string | null;
  customer_language: Language | null;
  session_language: Language | null;
  effects: Record<string, Outcome | "pending"> | string | null;
  visitor: boolean | null;
  plans: ShownPlans | string | null;
  menu_session: boolean | null;
  route_channel: string | null;
  route_chat_id: string | null;
  route_until: Date | string | null;
}

/** Which chat to read, and the phone it speaks for when the channel knows it (see `readChatState`). */
export interface ChatKey {
  channel: ChatChannel;
  chatId: string;
  phone: string | null | undefined;
}

/**
 * Reads a chat's state. `phone` given (WhatsApp knows the sender's number): that phone; undefined:
 * the chat's link, else its visitor phone.
 */
export async function readChatState(
  db: Db,
  channel: ChatChannel,
  chatId: string,
  phone: string | null | undefined,
): Promise<ChatState> {
  const [state] = await readChatStates(db, [{ channel, chatId, phone }]);
  return state!;
}

/**
 * `readChatState` for messages handled at the same time: the chats read in one turn of the event
 * loop are read by one statement (see turn-batcher.ts).
 */
export function createChatStateReader(db: Db): (key: ChatKey) => Promise<ChatState> {
  return createTurnBatcher((keys: ChatKey[]) => readChatStates(db, keys));
}

/** The states of several chats, in the keys' order: one statement, whatever the count. */
export async function readChatStates(db: Db, keys: readonly ChatKey[]): Promise<ChatState[]> {
  const wanted = JSON.stringify(
    keys.map((key, position) => ({
      position,
      channel: key.channel,
      chat_id: key.chatId,
      phone: key.phone ?? null,
      known: key.phone !== undefined,
    })),
  );
  const rows = await queryRows<StateRow>(
    db,
    chatStatesOf(sql`jsonb_to_recordset(${wanted}::jsonb)
          as k(position int, channel text, chat_id text, phone text, known boolean)`),
  );
  const byPosition = new Map(rows.map((row) => [Number(row.position), row]));
  return keys.map((_, position) => stateOf(byPosition.get(position)));
}

/** A row of `chatStatesOf`: the state of the key at `position`. */
export type StateRow = Row & { position: number };

/** The person's language as a chat's state has it: the customer's, else the chat's, else English. */
export function chatStateLanguage(state: ChatState | undefined): Language {
  return state?.customer?.language ?? state?.session?.language ?? state?.menuSession?.language ?? "en";
}

/**
 * The select that reads chats' states, from `keys`: a relation aliased `k` with the columns
 * position, channel, chat_id, phone and known (the phone is the channel's own: WhatsApp's sender).
 */
export function chatStatesOf(keys: SQL): SQL {
  // Each table is probed by its unique key for each chat read (lateral joins, which cannot be turned
  // into hash joins): a batch of a few chats costs a few index reads, not a read of every customer,
  // session and route, whatever the planner guesses of the batch's size (it guesses 100).
  return sql`select k.position, s.session_key, s.inputs, s.language as chat_language, s.step, s.last_activity_at,
          p.phone, p.linked,
          c.id as customer_id, c.account_number, c.name, c.language as customer_language,
          m.id is not null as menu_session, m.language as session_language, m.state -> 'effects' as effects,
          (m.state ->> 'visitor') = 'true' as visitor, m.state -> 'plans' as plans,
          r.channel as route_channel, r.chat_id as route_chat_id, r.until as route_until
        from ${keys}
        left join lateral (
          select s.session_key, s.inputs, s.language, s.step, s.last_activity_at from chat_sessions s
          where s.channel = k.channel and s.chat_id = k.chat_id limit 1
        ) s on true
        left join lateral (
          select k.phone as phone, false as linked where k.known
          union all
          select * from (
            select c2.phone, true as linked from chat_links l join customers c2 on c2.id = l.customer_id
            where l.channel = k.channel and l.chat_id = k.chat_id and not k.known
            union all
            -- the phone a visitor shared (visitorPhoneRowId in billing/chat-links.ts)
            select v.phone, false from channel_sessions v
            where v.id = k.channel || ':phone:' || k.chat_id and not k.known
            order by linked desc limit 1
          ) found
        ) p on true
        left join lateral (
          select c.id, c.account_number, c.name, c.language from customers c where c.phone = p.phone limit 1
        ) c on true
        left join lateral (
          select m.id, m.language, m.state from channel_sessions m
          where m.id = k.channel || ':' || s.session_key limit 1
        ) m on true
        left join lateral (
          select r.channel, r.chat_id, r.until from chat_reply_routes r where r.phone = p.phone limit 1
        ) r on true`;
}

export function stateOf(row: Row | undefined): ChatState {
  const inputs = typeof row?.inputs === "string" ? (JSON.parse(row.inputs) as string[]) : (row?.inputs ?? []);
  const effects = typeof row?.effects === "string" ? JSON.parse(row.effects) : (row?.effects ?? {});
  const plans = typeof row?.plans === "string" ? JSON.parse(row.plans) : (row?.plans ?? {});
  return {
    session:
      row?.session_key != null
        ? {
            sessionKey: row.session_key,
            inputs,
            language: row.chat_language,
            step: Number(row.step),
            lastActivityAt: new Date(row.last_activity_at as string),
          }
        : null,
    phone: row?.phone ?? null,
    linked: row?.linked === true,
    customer:
      row?.customer_id != null
        ? {
            id: Number(row.customer_id),
            accountNumber: row.account_number ?? "",
            name: row.name ?? "",
            language: row.customer_language ?? "en",
          }
        : null,
    replyRoute:
      row?.route_chat_id != null
        ? {
            channel: row.route_channel ?? "",
            chatId: row.route_chat_id,
            until: new Date(row.route_until as string),
          }
        : null,
    menuSession: row?.menu_session
      ? { language: row.session_language, effects, visitor: row.visitor === true, plans }
      : null,
  };
}

/**
 * The menu's user for this message, as `loadMenuUser` would read it. The menu session's record only
 * counts when the session continues (a new session key has none); a session in which a visitor
 * confirmed something stays a visitor's (see loadMenuUser).
 */
export function menuUserOf(state: ChatState, continuing: boolean): LoadedUser {
  const menuSession = continuing ? state.menuSession : null;
  const customer = state.customer && menuSession?.visitor !== true ? state.customer : null;
  return {
    user: {
      phone: state.phone ?? "",
      language: (customer ? state.customer?.language : menuSession?.language) ?? "en",
      customer: customer
        ? { id: customer.id, accountNumber: customer.accountNumber, name: customer.name }
        : null,
    },
    recorded: menuSession?.effects ?? {},
  };
}

/**
 * A visitor's shared phone that now belongs to a customer (they signed up from this chat, or were
 * added by the ISP) links the chat, as sharing a customer's contact does.
 */
export async function linkVisitorChat(
  db: Db,
  channel: ChatChannel,
  chatId: string,
  customerId: number,
): Promise<void> {
  await db.execute(
    sql`insert into chat_links (channel, chat_id, customer_id, method)
        values (${channel}, ${chatId}, ${customerId}, 'contact') on conflict do nothing`,
  );
  await chooseNoticeChannel(db, customerId, channel, { keepExisting: true });
}
