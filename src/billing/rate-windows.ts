import { type SQL, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";

/**
 * The upsert that takes a slot in the sliding window `key` of `rate_limit_windows` (an expression
 * over `source`, aliased `s`) for each row of `source`, unless `limit` hits since `from` fill it;
 * returns the keys taken. A second writer waits on the row's lock and counts again, so the limit
 * holds under races. Part of one statement where the caller needs it (intents/request.ts).
 */
export const takeSlotSql = (window: {
  key: SQL;
  source: SQL;
  limit: number;
  from: string;
  at: string;
}) => sql`
    insert into rate_limit_windows as w (key, hits, updated_at)
    select ${window.key}, array[${window.at}::timestamptz], ${window.at}::timestamptz from ${window.source} s
    on conflict (key) do update
      set hits = array(select h from unnest(w.hits) as h where h > ${window.from}::timestamptz) || ${window.at}::timestamptz,
          updated_at = ${window.at}::timestamptz
      where (select count(*) from unnest(w.hits) as h where h > ${window.from}::timestamptz) < ${window.limit}
    returning key`;

/**
 * Takes a slot in the sliding window `key` unless `limit` hits in the `windowMs` before `now` fill
 * it. False: the window is full and nothing was taken.
 */
export async function takeRateSlot(
  db: Executor,
  window: { key: string; limit: number; windowMs: number },
  now: Date,
): Promise<boolean> {
  const taken = await queryRows<{ key: string }>(
    db,
    takeSlotSql({
      key: sql`${window.key}`,
      source: sql`(select 1)`,
      limit: window.limit,
      from: new Date(now.getTime() - window.windowMs).toISOString(),
      at: now.toISOString(),
    }),
  );
  return taken.length > 0;
}
