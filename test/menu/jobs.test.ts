import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DAY, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { channelSessions } from "../../src/db/schema/index.ts";
import { purgeChannelSessions } from "../../src/menu/jobs.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("channel session housekeeping", () => {
  it("drops sessions untouched for two days and keeps the rest", async () => {
    const now = new Date("2026-06-10T12:00:00Z");
    const at = (ms: number) => new Date(now.getTime() - ms);
    await database.db.insert(channelSessions).values([
      { id: "ussd:old", channel: "ussd", phone: "+254712000001", updatedAt: at(2 * DAY + HOUR) },
      { id: "ussd:recent", channel: "ussd", phone: "+254712000002", updatedAt: at(2 * DAY - HOUR) },
      { id: "ussd:now", channel: "ussd", phone: "+254712000003", updatedAt: now },
    ]);
    expect(await purgeChannelSessions(database.db, now)).toEqual({ removed: 1 });
    const left = await database.db.select({ id: channelSessions.id }).from(channelSessions);
    expect(left.map((r) => r.id).sort()).toEqual(["ussd:now", "ussd:recent"]);
  });
});
