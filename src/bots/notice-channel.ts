import { sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import type { ChatChannel } from "../db/schema/index.ts";

/**
 * Linking a chat is the customer choosing it for their notices (receipts, reminders, credentials):
 * from then on they are routed there (migration 0013), with SMS as the fallback. Unlinking the chat
 * brings them back to SMS. An automatic link (WhatsApp knows the number) only chooses when the
 * customer had not chosen already.
 */
export async function chooseNoticeChannel(
  db: Executor,
  customerId: number,
  channel: ChatChannel,
  options: { keepExisting?: boolean } = {},
): Promise<void> {
  await db.execute(
    options.keepExisting
      ? sql`update customers set notify_channel = ${channel} where id = ${customerId} and notify_channel is null`
      : sql`update customers set notify_channel = ${channel} where id = ${customerId}`,
  );
}
