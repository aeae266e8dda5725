import { lt, type SQL, sql } from "drizzle-orm";
import { DAY } from "../clock.ts";
import type { Executor } from "../db/client.ts";
import { idempotencyKeys, rateLimitWindows } from "../db/schema/index.ts";

/**
 * Makes a statement act once per key. `claim` is the body of its first CTE (say `claim`): it
 * records the key, or nothing when the key is already there. `first(claim)` is the condition the
 * rest of the statement acts under: no key was given, or this request recorded it. A repeat running
 * at the same moment waits on the key's unique index until the first commits and then finds it, so
 * it cannot slip past a check that reads the statement's older snapshot.
 */
export function onceUnderKey(key: string | null, at: string): { claim: SQL; first: (cte: SQL) => SQL } {
  return {
    claim: sql`insert into idempotency_keys (key, created_at)
      select ${key}::text, ${at}::timestamptz where ${key}::text is not null
      on conflict (key) do nothing
      returning key`,
    first: (cte) => sql`(${key}::text is null or exists (select 1 from ${cte}))`,
  };
}

/** Keys older than this are dropped: gateways retry within seconds, and a menu session lasts minutes. */
export const IDEMPOTENCY_KEEP_MS = 2 * DAY;

export async function purgeIdempotencyKeys(tx: Executor, now: Date, keepMs = IDEMPOTENCY_KEEP_MS) {
  const removed = await tx
    .delete(idempotencyKeys)
    .where(lt(idempotencyKeys.createdAt, new Date(now.getTime() - keepMs)))
    .returning({ key: idempotencyKeys.key });
  // Prompt windows: a window untouched for as long as a key is kept holds no hit that still counts.
  const windows = await tx
    .delete(rateLimitWindows)
    .where(lt(rateLimitWindows.updatedAt, new Date(now.getTime() - keepMs)))
    .returning({ key: rateLimitWindows.key });
  return { removed: removed.length, windows: windows.length };
}
