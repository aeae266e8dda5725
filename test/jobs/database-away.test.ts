import { afterAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.ts";
import { type Database, openDatabase } from "../../src/db/client.ts";
import { startScheduler } from "../../src/jobs/scheduler.ts";
import type { StkGateway } from "../../src/payments/mpesa/daraja.ts";
import { scheduleRecovery } from "../../src/payments/mpesa/recovery.ts";
import { waitFor } from "../network/support.ts";
import { billingContext } from "../support/billing.ts";
import { capturingLogger } from "../support/logs.ts";

/**
 * The database is away for a while (PostgreSQL restarting, a failover): nothing answers on its
 * port. A timer firing then must log the failure and fire again, not end the process with an
 * unhandled rejection (which Node exits on), and with it every scheduled job.
 */

const AWAY = "postgres://tandao:pw@127.0.0.1:1/tandao";
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on("unhandledRejection", onUnhandled);
const closing: Array<() => unknown> = [];
afterAll(async () => {
  for (const close of closing.reverse()) await close();
  process.off("unhandledRejection", onUnhandled);
});

async function awayDatabase(): Promise<Database> {
  const database = await openDatabase({ databaseUrl: AWAY, dataDir: "", maxConnections: 1 });
  closing.push(() => database.close().catch(() => undefined));
  return database;
}

describe("scheduled work while the database is away", () => {
  it("a job's timer logs each run it could not make and fires again", async () => {
    const database = await awayDatabase();
    const { lines, logger } = capturingLogger("error");
    const scheduler = startScheduler(
      { db: database.db, clock: systemClock, logger, timezone: "Africa/Nairobi" },
      [{ name: "every-second-while-away", schedule: "* * * * * *", run: async () => ({}) }],
    );
    closing.push(scheduler.stop);
    await scheduler.runAll();
    await waitFor(() => lines.filter((l) => l.includes("job could not run")).length >= 3);
    scheduler.stop();
    expect(unhandled).toEqual([]);
  });

  it("the M-Pesa recovery timer logs each run it could not make and fires again", async () => {
    const database = await awayDatabase();
    const { lines, logger } = capturingLogger("error");
    const unused = {} as StkGateway;
    const cron = scheduleRecovery({
      ctx: billingContext(database.db).ctx,
      gateway: unused,
      logger,
      pendingSeconds: 120,
      giveUpSeconds: 900,
      everySeconds: 1,
      scheduler: true,
    });
    closing.push(() => cron?.stop());
    await waitFor(() => lines.filter((l) => l.includes("M-Pesa recovery could not run")).length >= 2);
    cron?.stop();
    expect(unhandled).toEqual([]);
  });
});
