import { sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { periodBoundarySql } from "../../src/billing/period-sql.ts";
import { periodBoundary } from "../../src/billing/periods.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const tz = "Africa/Nairobi";

describe("billing periods", () => {
  it("a monthly period keeps the anchor's day, clamped to short months, without drifting", () => {
    const anchor = new Date("2026-01-31T09:00:00+03:00");
    const boundaries = [0, 1, 2, 3].map((n) => periodBoundary(anchor, "months", 1, n, tz).toISOString());
    expect(boundaries).toEqual([
      "2026-01-31T06:00:00.000Z",
      "2026-02-28T06:00:00.000Z",
      "2026-03-31T06:00:00.000Z",
      "2026-04-30T06:00:00.000Z",
    ]);
  });

  it("the database computes the same boundaries as the application", async () => {
    const samples = fc.sample(
      fc.record({
        anchor: fc.date({ min: new Date("2024-01-01"), max: new Date("2030-12-31"), noInvalidDate: true }),
        unit: fc.constantFrom("months" as const, "days" as const, "hours" as const),
        count: fc.integer({ min: 1, max: 12 }),
        n: fc.integer({ min: 0, max: 40 }),
      }),
      60,
    );
    for (const s of samples) {
      const [row] = await queryRows<{ b: string }>(
        database.db,
        sql`select to_char(${periodBoundarySql(sql`${s.anchor.toISOString()}::timestamptz`, sql`${s.unit}::text`, sql`${s.count}::int`, sql`${s.n}::int`, tz)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as b`,
      );
      expect(row!.b, JSON.stringify(s)).toBe(
        periodBoundary(s.anchor, s.unit, s.count, s.n, tz).toISOString(),
      );
    }
  });
});
