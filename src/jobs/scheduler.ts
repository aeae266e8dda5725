import { Cron } from "croner";
import type { Clock } from "../clock.ts";
import type { Db, Executor } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { runJob } from "./runner.ts";

export interface ScheduledJob {
  name: string;
  schedule: string;
  run(tx: Executor): Promise<Record<string, number>>;
}

/**
 * The minute a timer fired for. Every instance's timer fires for the same minute of a schedule, so
 * the job runs once for it across instances (runner.ts), however far apart their runs fall.
 */
export const slotOf = (at: Date) => new Date(Math.floor(at.getTime() / 60_000) * 60_000);

/** Starts croner timers for the jobs; `stop()` ends them (graceful shutdown). */
export function startScheduler(
  deps: { db: Db; clock: Clock; logger: Logger; timezone: string },
  jobs: ScheduledJob[],
) {
  /**
   * A run that could not even be recorded (the database down or failing over) is logged: thrown
   * from a timer it would be an unhandled rejection, which ends the process, and so every job.
   * The next tick tries again; a missed slot is caught up at the next start (`runAll`).
   */
  const run = async (job: ScheduledJob, slot?: Date) => {
    try {
      const result = await runJob(deps.db, deps.clock, job.name, job.run, slot);
      if (result.status === "failed") deps.logger.error({ job: job.name, error: result.error }, "job failed");
      else deps.logger.info({ job: job.name, status: result.status, counts: result.counts }, "job ran");
    } catch (error) {
      deps.logger.error({ job: job.name, err: error }, "job could not run");
    }
  };
  const timers = jobs.map(
    (job) =>
      new Cron(job.schedule, { name: job.name, protect: true, timezone: deps.timezone }, (self) =>
        run(job, slotOf(self.currentRun() ?? deps.clock.now())),
      ),
  );
  return {
    /**
     * Runs every job once now (at start-up, so a restart catches up at once); with `slot`, as the
     * timers would for that scheduled minute.
     */
    runAll: async (slot?: Date) => {
      for (const job of jobs) await run(job, slot ? slotOf(slot) : undefined);
    },
    stop: () => {
      for (const timer of timers) timer.stop();
    },
  };
}
