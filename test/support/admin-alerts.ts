import { and, eq } from "drizzle-orm";
import { creditedTwiceAlerts } from "../../src/bots/admin/mpesa-alerts.ts";
import type { Db } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";

/**
 * The admin chat `chatId`'s "credited twice" alerts, as the alerts job runs them: `tell()` runs the
 * job once and returns its counts; `text()` reads the alert it queued for that chat.
 */
export function creditedTwiceAlertsFor(db: Db, now: () => Date, chatId: number) {
  return {
    tell: () =>
      db.transaction(async (tx) => {
        const counts: Record<string, number> = {};
        await creditedTwiceAlerts(
          tx,
          now(),
          { chatIds: [chatId], timezone: "Africa/Nairobi", batch: 10 },
          counts,
        );
        return counts;
      }),
    async text(): Promise<string> {
      const [alert] = await db
        .select()
        .from(messageOutbox)
        .where(and(eq(messageOutbox.channel, "telegram_admin"), eq(messageOutbox.recipient, String(chatId))));
      return String((alert!.content as { payload: { text: string } }).payload.text);
    },
  };
}
