import { sql } from "drizzle-orm";
import { visitorPhoneRowId } from "../../billing/chat-links.ts";
import type { Executor } from "../../db/client.ts";
import type { ChatChannel } from "../../db/schema/index.ts";

/**
 * A visitor's own phone (shared as their contact), kept for their chat so a voucher can be paid by
 * M-Pesa from it. It lives in `channel_sessions` under an id no menu session can take (menu session
 * keys are base64url, without `:`), so it needs no column of its own and goes with the channel-sessions
 * purge: two days after it was last shared, the visitor is asked again rather than kept on file.
 */
const rowId = visitorPhoneRowId;

export async function rememberVisitorPhone(
  db: Executor,
  channel: ChatChannel,
  chatId: string,
  phone: string,
  now: Date,
): Promise<void> {
  await db.execute(
    sql`insert into channel_sessions (id, channel, phone, updated_at)
        values (${rowId(channel, chatId)}, ${channel}, ${phone}, ${now.toISOString()}::timestamptz)
        on conflict (id) do update set phone = excluded.phone, updated_at = excluded.updated_at`,
  );
}
