import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { ts } from "../../db/params.ts";
import type { InboundMessage } from "./inbound.ts";

/**
 * The chat id of each message: the sender's number when known, else their business-scoped user id
 * (a WhatsApp username's holder, whose number Meta does not give). A message that carries both
 * records the pair (whatsapp_user_ids) before it is stored, so one that later names the same
 * person by BSUID alone reaches the chat of their number: their link, place in the menu and notices.
 * Messages without a BSUID (all of them before usernames) cost no statement.
 */
export async function chatIdsOf(db: Db, now: Date, messages: readonly InboundMessage[]): Promise<string[]> {
  const known = new Map<string, string>();
  for (const m of messages) if (m.waId !== null && m.userId !== null) known.set(m.userId, m.waId);
  const unknown = [
    ...new Set(messages.flatMap((m) => (m.waId === null && m.userId !== null ? [m.userId] : []))),
  ].filter((userId) => !known.has(userId));
  if (known.size > 0 || unknown.length > 0) {
    const pairs = JSON.stringify([...known].map(([user_id, wa_id]) => ({ user_id, wa_id })));
    // A pair already known is not written again: the lookup of a busy chat stays a read. The insert
    // runs whether or not the select reads it (PostgreSQL runs every data-modifying WITH).
    const rows = await queryRows<{ user_id: string; wa_id: string }>(
      db,
      sql`with learnt as (
            insert into whatsapp_user_ids (user_id, wa_id, learnt_at)
            select p.user_id, p.wa_id, ${ts(now)}
            from jsonb_to_recordset(${pairs}::jsonb) as p(user_id text, wa_id text)
            on conflict (user_id) do update set wa_id = excluded.wa_id, learnt_at = excluded.learnt_at
              where whatsapp_user_ids.wa_id <> excluded.wa_id
          )
          select u.user_id, u.wa_id from whatsapp_user_ids u
          where u.user_id in (select jsonb_array_elements_text(${JSON.stringify(unknown)}::jsonb))`,
    );
    for (const row of rows) known.set(row.user_id, row.wa_id);
  }
  return messages.map((m) => m.waId ?? known.get(m.userId ?? "") ?? (m.userId as string));
}
