import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, type Executor, queryRows } from "../db/client.ts";
import { jobRuns } from "../db/schema/index.ts";

export interface JobResult {
  status: "ok" | "failed" | "skipped";
  counts: Record<string, number>;
  error?: string;
}

/** A stable 32-bit key per job name for PostgreSQL advisory locks. */
export function lockKey(job: string): number {
  let hash = 0x811c9dc5;
  for (const char of job) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash | 0;
}

const runningHere = new Set<string>();

/**
 * Runs one job in one transaction, at most once at a time across every instance sharing the
 * database: a transaction-scoped advisory lock (released by commit or rollback, so a crash frees
 * it) plus an in-process guard for overlapping timers. A skipped, failed or finished run is
 * recorded in job_runs with its counts. Work done by a failed run is rolled back whole, and the
 * jobs' unique keys make the next run create nothing twice.
 */
export async function runJob(
  db: Db,
  clock: Clock,
  job: string,
  work: (tx: Executor) => Promise<Record<string, number>>,
): Promise<JobResult> {
  const startedAt = clock.now();
  if (runningHere.has(job)) {
    await db.insert(jobRuns).values({ job, startedAt, finishedAt: startedAt, status: "skipped" });
    return { status: "skipped", counts: {} };
  }
  runningHere.add(job);
  try {
    const result = await db.transaction(async (tx): Promise<JobResult> => {
      const [lock] = await queryRows<{ locked: boolean }>(
        tx,
        sql`select pg_try_advisory_xact_lock(${lockKey(job)}) as locked`,
      );
      if (!lock?.locked) return { status: "skipped", counts: {} };
      const counts = await work(tx);
      await tx.insert(jobRuns).values({ job, startedAt, finishedAt: clock.now(), status: "ok", counts });
      return { status: "ok", counts };
    });
    if (result.status === "skipped") {
      await db.insert(jobRuns).values({ job, startedAt, finishedAt: clock.now(), status: "skipped" });
    }
    return result;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await db
      .insert(jobRuns)
      .values({ job, startedAt, finishedAt: clock.now(), status: "failed", error: message });
    return { status: "failed", counts: {}, error: message };
  } finally {
    runningHere.delete(job);
  }
}
