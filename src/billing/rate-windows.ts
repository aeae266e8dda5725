import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";

/**
 * Takes a slot in the sliding window `key` of `rate_limit_windows` unless `limit` hits in the
 * `windowMs` before `now` fill it. It is one upsert, as the STK prompt limits' (intents/request.ts):
 * a second writer waits on the row's lock and counts again, so the limit holds under races. False:
 * the window is full and nothing was taken.
 */
export async function takeRateSlot(
  db: Executor,
  window: { key: string; limit: number; windowMs: number },
  now: Date,
): Promise<boolean> {
  const at = now.toISOString();
  const from = new Date(now.getTime() - window.windowMs).toISOString();
  const taken = await queryRows<{ key: string }>(
    db,
    sql`insert into rate_limit_windows as w (key, hits, updated_at)
        values (${window.key}, array[${at}::timestamptz], ${at}::timestamptz)
        on conflict (key) do update
          set hits = array(select h from unnest(w.hits) as h where h > ${from}::timestamptz) || ${at}::timestamptz,
              updated_at = ${at}::timestamptz
          where (select count(*) from unnest(w.hits) as h where h > ${from}::timestamptz) < ${window.limit}
        returning key`,
  );
  return taken.length > 0;
}
