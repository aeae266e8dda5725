import { sql } from "drizzle-orm";
import { type Clock, DAY } from "../clock.ts";
import { type Executor, queryRows } from "../db/client.ts";
import type { ScheduledJob } from "./scheduler.ts";

/**
 * How long the record of finished job runs is kept. Every scheduler instance writes a row per job
 * per tick (thousands a day, skipped runs included); kept for ever, they slowed each run's claim
 * and every metrics scrape, which count them.
 */
export const JOB_RUNS_KEEP_MS = 30 * DAY;

/** Drops finished runs older than `keepMs`; a run still open (under way, or died) is left. */
export async function purgeJobRuns(tx: Executor, now: Date, keepMs = JOB_RUNS_KEEP_MS) {
  const [row] = await queryRows<{ removed: number }>(
    tx,
    sql`with gone as (
          delete from job_runs
          where started_at < ${new Date(now.getTime() - keepMs).toISOString()}::timestamptz
            and finished_at is not null
          returning 1)
        select count(*)::int as removed from gone`,
  );
  return { removed: row?.removed ?? 0 };
}

export const jobHistoryJobs = (clock: Clock): ScheduledJob[] => [
  { name: "job-runs-purge", schedule: "41 3 * * *", run: (tx) => purgeJobRuns(tx, clock.now()) },
];
