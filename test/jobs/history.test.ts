import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DAY } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { jobRuns } from "../../src/db/schema/index.ts";
import { purgeJobRuns } from "../../src/jobs/history.ts";
import { createTestDatabase } from "../support/db.ts";

/** The record of job runs is kept a month, so that it does not grow for ever. */

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("job run history", () => {
  it("drops finished runs older than a month, and keeps recent ones and runs still open", async () => {
    const now = new Date("2026-12-01T03:41:00Z");
    const ago = (days: number) => new Date(now.getTime() - days * DAY);
    await database.db.insert(jobRuns).values([
      { job: "history-test", startedAt: ago(31), finishedAt: ago(31), status: "ok" },
      { job: "history-test", startedAt: ago(40), finishedAt: ago(40), status: "skipped" },
      { job: "history-test", startedAt: ago(29), finishedAt: ago(29), status: "failed" },
      // Claimed by an instance that died: left for the runner to judge stale.
      { job: "history-test", startedAt: ago(45), status: "ok" },
    ]);
    expect(await purgeJobRuns(database.db, now)).toEqual({ removed: 2 });
    const left = await database.db.select().from(jobRuns).where(eq(jobRuns.job, "history-test"));
    expect(left.map((r) => r.status).sort()).toEqual(["failed", "ok"]);
    expect(await purgeJobRuns(database.db, now)).toEqual({ removed: 0 });
  });
});
