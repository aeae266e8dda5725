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

/**
 * Runs under way in this process, per database handle: overlapping timers of one instance skip
 * without a round trip, and shutdown waits for them (`jobsFinished`) before closing the database so
 * that each run records its end. (Per handle rather than global so that tests can play two instances.)
 */
const runningHere = new WeakMap<Db, Map<string, Promise<unknown>>>();

function guardFor(db: Db): Map<string, Promise<unknown>> {
  let jobs = runningHere.get(db);
  if (!jobs) {
    jobs = new Map();
    runningHere.set(db, jobs);
  }
  return jobs;
}

/** Resolves when the runs this process started on `db` have ended. */
export async function jobsFinished(db: Db): Promise<void> {
  await Promise.allSettled([...(runningHere.get(db)?.values() ?? [])]);
}

/** Runs `run` as job `job` unless it is already running here (then null). */
async function exclusiveHere<T>(db: Db, job: string, run: () => Promise<T>): Promise<T | null> {
  const here = guardFor(db);
  if (here.has(job)) return null;
  const running = run();
  here.set(job, running);
  try {
    return await running;
  } finally {
    here.delete(job);
  }
}

async function recordSkipped(db: Db, clock: Clock, job: string, startedAt: Date): Promise<JobResult> {
  await db.insert(jobRuns).values({ job, startedAt, finishedAt: clock.now(), status: "skipped" });
  return { status: "skipped", counts: {} };
}

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
  /** The scheduled time this run is for: a job that already ran for it (any instance) is skipped. */
  slot?: Date,
): Promise<JobResult> {
  const startedAt = clock.now();
  const result = await exclusiveHere(db, job, async (): Promise<JobResult> => {
    try {
      const result = await db.transaction(async (tx): Promise<JobResult> => {
        const [lock] = await queryRows<{ locked: boolean }>(
          tx,
          sql`select pg_try_advisory_xact_lock(${lockKey(job)}) as locked`,
        );
        if (!lock?.locked) return { status: "skipped", counts: {} };
        // Under the lock: another instance's run for this slot has committed, or is not there.
        if (slot) {
          const done = await queryRows(
            tx,
            sql`select 1 from job_runs where job = ${job} and slot = ${slot.toISOString()}::timestamptz and status = 'ok'`,
          );
          if (done.length > 0) return { status: "skipped", counts: {} };
        }
        const counts = await work(tx);
        await tx
          .insert(jobRuns)
          .values({ job, startedAt, finishedAt: clock.now(), status: "ok", counts, slot: slot ?? null });
        return { status: "ok", counts };
      });
      if (result.status === "skipped") return recordSkipped(db, clock, job, startedAt);
      return result;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await db
        .insert(jobRuns)
        .values({ job, startedAt, finishedAt: clock.now(), status: "failed", error: message });
      return { status: "failed", counts: {}, error: message };
    }
  });
  return result ?? recordSkipped(db, clock, job, startedAt);
}

/** What a job run outside a transaction reports: its counts, and what failed in a run that went on. */
export interface JobOutcome {
  counts: Record<string, number>;
  /** Set when part of the work failed (a router down): the run is recorded as `failed`. */
  error?: string;
}

export interface OutsideTransactionOptions {
  /**
   * A run still open after this long is taken to have died with its instance (killed, not
   * stopped): it is recorded as failed and no longer keeps the job from running.
   */
  staleAfterMs: number;
}

/**
 * For jobs that talk to routers or to Daraja between their queries. Such a job cannot run inside
 * the lock's transaction: it would hold a connection (the embedded database's only session, on
 * which its own queries would then wait) for as long as the slowest router or HTTP call. So the
 * advisory lock guards a short claim instead, and the claim is the run's own job_runs row, open
 * (no `finished_at`) until the run ends: a second instance finds it and records a skipped run. A
 * stopped instance closes its row; one that is killed leaves it open until `staleAfterMs`.
 */
export async function runJobOutsideTransaction<T extends JobOutcome>(
  db: Db,
  clock: Clock,
  job: string,
  work: () => Promise<T>,
  options: OutsideTransactionOptions,
): Promise<JobResult & { outcome?: T }> {
  const startedAt = clock.now();
  const result = await exclusiveHere(db, job, async (): Promise<JobResult & { outcome?: T }> => {
    const runId = await claimRun(db, job, startedAt, options.staleAfterMs);
    if (runId === null) return recordSkipped(db, clock, job, startedAt);
    let outcome: T;
    try {
      outcome = await work();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await db.execute(sql`
        update job_runs set finished_at = ${clock.now().toISOString()}::timestamptz, status = 'failed',
          error = ${message.slice(0, 2000)}
        where id = ${runId}`);
      return { status: "failed", counts: {}, error: message };
    }
    const status = outcome.error === undefined ? "ok" : "failed";
    await db.execute(sql`
      update job_runs set finished_at = ${clock.now().toISOString()}::timestamptz, status = ${status},
        counts = ${JSON.stringify(outcome.counts)}::jsonb, error = ${outcome.error?.slice(0, 2000) ?? null}
      where id = ${runId}`);
    return { status, counts: outcome.counts, error: outcome.error, outcome };
  });
  return result ?? recordSkipped(db, clock, job, startedAt);
}

/** The open job_runs row of a new run, or null when another run of the job is open. */
async function claimRun(db: Db, job: string, startedAt: Date, staleAfterMs: number): Promise<number | null> {
  const at = startedAt.toISOString();
  return db.transaction(async (tx) => {
    const [lock] = await queryRows<{ locked: boolean }>(
      tx,
      sql`select pg_try_advisory_xact_lock(${lockKey(job)}) as locked`,
    );
    if (!lock?.locked) return null;
    const staleBefore = new Date(startedAt.getTime() - staleAfterMs).toISOString();
    await tx.execute(sql`
      update job_runs set status = 'failed', finished_at = ${at}::timestamptz,
        error = 'never finished: its instance stopped without closing the run'
      where job = ${job} and finished_at is null and started_at <= ${staleBefore}::timestamptz`);
    const open = await queryRows<{ id: number }>(
      tx,
      sql`select id from job_runs where job = ${job} and finished_at is null limit 1`,
    );
    if (open.length > 0) return null;
    const [run] = await queryRows<{ id: number }>(
      tx,
      sql`insert into job_runs (job, started_at, status) values (${job}, ${at}::timestamptz, 'ok') returning id`,
    );
    return Number(run!.id);
  });
}
