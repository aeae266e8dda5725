import { scheduledJobs } from "croner";
import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock, MINUTE, systemClock } from "../../src/clock.ts";
import { loadConfig } from "../../src/config.ts";
import { type Database, type Db, openDatabase } from "../../src/db/client.ts";
import { jobRuns, routers } from "../../src/db/schema/index.ts";
import { runJobOutsideTransaction } from "../../src/jobs/runner.ts";
import { createLogger } from "../../src/logger.ts";
import { startNetwork } from "../../src/network/index.ts";
import { RouterPool } from "../../src/network/pool.ts";
import { reconcileAll, reconcileJobName } from "../../src/network/reconcile.ts";
import type { StkGateway } from "../../src/payments/mpesa/daraja.ts";
import {
  type RecoveryOptions,
  recoveryJobName,
  runRecoveryJob,
  scheduleRecovery,
} from "../../src/payments/mpesa/recovery.ts";
import { box, emulatedRouter } from "../network/support.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";

/**
 * Reconciliation and M-Pesa recovery talk to routers and to Daraja between their queries, so they
 * run outside a transaction; they still go through the job runner: one run at a time across
 * instances, every run in `job_runs`, scheduled only where SCHEDULER is on.
 */

const silent = createLogger("silent");
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 20 });
});
afterAll(async () => {
  await database.close();
});

async function runsOf(db: Db, job: string) {
  return db.select().from(jobRuns).where(eq(jobRuns.job, job)).orderBy(asc(jobRuns.id));
}

/** A job whose run lasts until the test lets it finish. */
function heldJob() {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let started = () => {};
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  return {
    release,
    running,
    work: async () => {
      started();
      await released;
      return { counts: { done: 1 } };
    },
  };
}

const unusedGateway: StkGateway = {
  stkPush: () => Promise.reject(new Error("no push expected")),
  stkQuery: () => Promise.reject(new Error("no query expected")),
};

describe("a job that runs outside a transaction", () => {
  it("runs once at a time: a second run while the first is under way is skipped, and both are recorded", async () => {
    const clock = new FakeClock("2026-05-01T08:00:00Z");
    const held = heldJob();
    const first = runJobOutsideTransaction(database.db, clock, "test.held", held.work, {
      staleAfterMs: MINUTE,
    });
    await held.running;
    const second = await runJobOutsideTransaction(database.db, clock, "test.held", held.work, {
      staleAfterMs: MINUTE,
    });
    expect(second.status).toBe("skipped");
    held.release();
    expect(await first).toMatchObject({ status: "ok", counts: { done: 1 } });
    const runs = await runsOf(database.db, "test.held");
    expect(runs.map((r) => r.status).sort()).toEqual(["ok", "skipped"]);
    expect(runs.find((r) => r.status === "ok")).toMatchObject({ counts: { done: 1 } });
    expect(runs.every((r) => r.finishedAt !== null)).toBe(true);
  });

  it("is not kept from running for ever by a run whose instance was killed: after staleAfterMs it runs, and the dead run is closed as failed", async () => {
    const clock = new FakeClock("2026-05-01T09:00:00Z");
    // What a killed instance leaves: a run that never finished.
    await database.db.insert(jobRuns).values({ job: "test.stale", startedAt: clock.now(), status: "ok" });
    clock.advance(5 * MINUTE);
    const early = await runJobOutsideTransaction(
      database.db,
      clock,
      "test.stale",
      async () => ({ counts: { done: 1 } }),
      { staleAfterMs: 10 * MINUTE },
    );
    expect(early.status).toBe("skipped");
    clock.advance(6 * MINUTE);
    const later = await runJobOutsideTransaction(
      database.db,
      clock,
      "test.stale",
      async () => ({ counts: { done: 1 } }),
      { staleAfterMs: 10 * MINUTE },
    );
    expect(later.status).toBe("ok");
    const runs = await runsOf(database.db, "test.stale");
    expect(runs.map((r) => r.status)).toEqual(["failed", "skipped", "ok"]);
    expect(runs[0]?.error).toMatch(/never finished/);
  });

  it("records a failed run with its error, and the next run goes ahead", async () => {
    const clock = new FakeClock("2026-05-01T10:00:00Z");
    const failed = await runJobOutsideTransaction(
      database.db,
      clock,
      "test.failing",
      async () => {
        throw new Error("router exploded");
      },
      { staleAfterMs: MINUTE },
    );
    expect(failed).toMatchObject({ status: "failed", error: "router exploded" });
    const next = await runJobOutsideTransaction(
      database.db,
      clock,
      "test.failing",
      async () => ({ counts: { done: 1 } }),
      { staleAfterMs: MINUTE },
    );
    expect(next.status).toBe("ok");
    const runs = await runsOf(database.db, "test.failing");
    expect(runs).toMatchObject([
      { status: "failed", error: "router exploded" },
      { status: "ok", counts: { done: 1 } },
    ]);
  });
});

describe("reconciliation through the job runner", () => {
  it("two reconciliations at once: one repairs the routers, the other is skipped; both are in job_runs", async () => {
    const tower = await emulatedRouter(database.db);
    // A router a little way off keeps the first run busy while the second one starts.
    tower.emulator.latencyMs = 100;
    const pool = new RouterPool({ db: database.db, box, clock: systemClock });
    try {
      const before = (await runsOf(database.db, reconcileJobName)).length;
      const deps = { db: database.db, clock: systemClock, pool };
      const runs = await Promise.all([reconcileAll(deps), reconcileAll(deps)]);
      expect(runs.map((r) => r.status).sort()).toEqual(["ok", "skipped"]);
      expect(runs.find((r) => r.status === "ok")?.reports.map((r) => r.routerId)).toContain(tower.routerId);
      expect(runs.find((r) => r.status === "skipped")?.reports).toEqual([]);
      const recorded = (await runsOf(database.db, reconcileJobName)).slice(before);
      expect(recorded.map((r) => r.status).sort()).toEqual(["ok", "skipped"]);
    } finally {
      await pool.close();
      await tower.emulator.stop();
      // Gone, so that a later reconciliation here does not report it down.
      await database.db.delete(routers).where(eq(routers.id, tower.routerId));
    }
  });
});

describe("M-Pesa recovery through the job runner", () => {
  it("two recovery runs at once: one runs, the other is skipped; both are in job_runs", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-05-02T08:00:00Z"));
    const options: RecoveryOptions = {
      ctx,
      gateway: unusedGateway,
      logger: silent,
      pendingSeconds: 120,
      giveUpSeconds: 900,
    };
    const before = (await runsOf(database.db, recoveryJobName)).length;
    const results = await Promise.all([runRecoveryJob(options), runRecoveryJob(options)]);
    expect(results.filter((r) => r !== null)).toEqual([
      { queried: 0, settled: 0, timedOut: 0, stillPending: 0, unresolved: 0, errors: 0 },
    ]);
    const recorded = (await runsOf(database.db, recoveryJobName)).slice(before);
    expect(recorded.map((r) => r.status).sort()).toEqual(["ok", "skipped"]);
  });
});

describe("SCHEDULER", () => {
  const scheduled = (name: string) => scheduledJobs.some((job) => job.name === name);
  const networkConfig = (scheduler: boolean) => ({
    RECONCILE_CRON: "0 0 1 1 *",
    PROVISIONING_MAX_ATTEMPTS: 3,
    ROUTER_COMMAND_TIMEOUT_MS: 2_000,
    ROUTER_PROBE_SECONDS: 15,
    SCHEDULER: scheduler,
  });
  const recoveryOptions = (): RecoveryOptions => ({
    ctx: billingContext(database.db).ctx,
    gateway: unusedGateway,
    logger: silent,
    pendingSeconds: 120,
    giveUpSeconds: 900,
  });

  it("false: neither reconciliation nor M-Pesa recovery is scheduled; true: both are", async () => {
    const off = startNetwork({
      db: database.db,
      clock: systemClock,
      logger: silent,
      box,
      config: networkConfig(false),
    });
    const recoveryOff = scheduleRecovery({ ...recoveryOptions(), scheduler: false });
    try {
      expect(scheduled(reconcileJobName)).toBe(false);
      expect(recoveryOff).toBeNull();
      expect(scheduled(recoveryJobName)).toBe(false);
    } finally {
      await off.stop();
    }
    const on = startNetwork({
      db: database.db,
      clock: systemClock,
      logger: silent,
      box,
      config: networkConfig(true),
    });
    const recoveryOn = scheduleRecovery({ ...recoveryOptions(), scheduler: true });
    try {
      expect(scheduled(reconcileJobName)).toBe(true);
      expect(recoveryOn).not.toBeNull();
      expect(scheduled(recoveryJobName)).toBe(true);
    } finally {
      recoveryOn?.stop();
      await on.stop();
    }
  });

  it("the payments module schedules recovery only when SCHEDULER is on", async () => {
    // Imported here: the payments module pulls in the billing code being reorganised elsewhere.
    const { startPayments } = await import("../../src/payments/index.ts");
    for (const scheduler of [false, true]) {
      const payments = await startPayments({
        config: loadConfig({ SCHEDULER: String(scheduler), LOG_LEVEL: "silent" }),
        ctx: billingContext(database.db).ctx,
        logger: silent,
      });
      try {
        expect(scheduled(recoveryJobName)).toBe(scheduler);
      } finally {
        await payments.stop();
      }
      expect(scheduled(recoveryJobName)).toBe(false);
    }
  });
});

describe.runIf(onRealPostgres())("two instances on one PostgreSQL database", () => {
  let other: Database;
  beforeAll(async () => {
    // A second client with its own pool stands for a second instance of the service.
    other = await openDatabase({ databaseUrl: database.url, dataDir: "", maxConnections: 20 });
  });
  afterAll(async () => {
    await other?.close();
  });

  it("a job run outside a transaction on one instance makes the other's run skip", async () => {
    const clock = new FakeClock("2026-05-03T08:00:00Z");
    const held = heldJob();
    const first = runJobOutsideTransaction(database.db, clock, "test.two-instances", held.work, {
      staleAfterMs: MINUTE,
    });
    await held.running;
    const second = await runJobOutsideTransaction(other.db, clock, "test.two-instances", held.work, {
      staleAfterMs: MINUTE,
    });
    expect(second.status).toBe("skipped");
    held.release();
    expect((await first).status).toBe("ok");
  });

  it("reconciliations started on both at once: one runs, the other is skipped", async () => {
    const tower = await emulatedRouter(database.db);
    tower.emulator.latencyMs = 100;
    const pools = [database.db, other.db].map((db) => new RouterPool({ db, box, clock: systemClock }));
    try {
      const before = (await runsOf(database.db, reconcileJobName)).length;
      const runs = await Promise.all(
        [database.db, other.db].map((db, i) => reconcileAll({ db, clock: systemClock, pool: pools[i]! })),
      );
      expect(runs.map((r) => r.status).sort()).toEqual(["ok", "skipped"]);
      const recorded = (await runsOf(database.db, reconcileJobName)).slice(before);
      expect(recorded.map((r) => r.status).sort()).toEqual(["ok", "skipped"]);
    } finally {
      await Promise.all(pools.map((p) => p.close()));
      await tower.emulator.stop();
      await database.db.delete(routers).where(eq(routers.id, tower.routerId));
    }
  });
});
