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
  const timers = jobs.map(
    (job) =>
      new Cron(job.schedule, { name: job.name, protect: true, timezone: deps.timezone }, async (self) => {
        const result = await runJob(
          deps.db,
          deps.clock,
          job.name,
          job.run,
          slotOf(self.currentRun() ?? deps.clock.now()),
        );
        if (result.status === "failed")
          deps.logger.error({ job: job.name, error: result.error }, "job failed");
        else deps.logger.info({ job: job.name, status: result.status, counts: result.counts }, "job ran");
      }),
  );
  return {
    /**
     * Runs every job once now (at start-up, so a restart catches up at once); with `slot`, as the
     * timers would for that scheduled minute.
     */
    runAll: async (slot?: Date) => {
      for (const job of jobs)
        await runJob(deps.db, deps.clock, job.name, job.run, slot ? slotOf(slot) : undefined);
    },
    stop: () => {
      for (const timer of timers) timer.stop();
    },
  };
}
