import { lt } from "drizzle-orm";
import { type Clock, DAY } from "../clock.ts";
import type { Executor } from "../db/client.ts";
import { channelSessions, chatSessions } from "../db/schema/index.ts";
import type { ScheduledJob } from "../jobs/scheduler.ts";

/** A USSD session lasts minutes; its row (language, confirmed outcomes) is kept this long, then dropped. */
export const CHANNEL_SESSION_KEEP_MS = 2 * DAY;

export async function purgeChannelSessions(tx: Executor, now: Date, keepMs = CHANNEL_SESSION_KEEP_MS) {
  const removed = await tx
    .delete(channelSessions)
    .where(lt(channelSessions.updatedAt, new Date(now.getTime() - keepMs)))
    .returning({ id: channelSessions.id });
  return { removed: removed.length };
}

/**
 * A chat's place in the menu expires after minutes of idleness anyway (it starts over at home); a row
 * untouched this long only keeps an abandoned chat's last inputs, so it goes.
 */
export const CHAT_SESSION_KEEP_MS = 2 * DAY;

export async function purgeChatSessions(tx: Executor, now: Date, keepMs = CHAT_SESSION_KEEP_MS) {
  const removed = await tx
    .delete(chatSessions)
    .where(lt(chatSessions.lastActivityAt, new Date(now.getTime() - keepMs)))
    .returning({ id: chatSessions.id });
  return { removed: removed.length };
}

/** The menu's housekeeping, for the scheduler. */
export function menuJobs(clock: Clock): ScheduledJob[] {
  return [
    {
      name: "channel-sessions-purge",
      schedule: "17 * * * *",
      run: (tx) => purgeChannelSessions(tx, clock.now()),
    },
    {
      name: "chat-sessions-purge",
      schedule: "23 * * * *",
      run: (tx) => purgeChatSessions(tx, clock.now()),
    },
  ];
}
