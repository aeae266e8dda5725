import { writeFileSync } from "node:fs";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CSV_HEADER,
  chartFont,
  kesFromCents,
  REPORT_WIDTH_PX,
  revenueReport,
} from "../../src/admin/report.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { businessStats, type MonthFigures, monthlyRevenue } from "../../src/billing/stats.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

const ROWS: MonthFigures[] = [
  { month: "2026-01", collectedCents: 150_000, newSubscribers: 1, activeAtMonthEnd: 1 },
  { month: "2026-02", collectedCents: 300_005, newSubscribers: 2, activeAtMonthEnd: 2 },
  { month: "2026-03", collectedCents: 870_099, newSubscribers: 7, activeAtMonthEnd: 6 },
  { month: "2026-04", collectedCents: 7, newSubscribers: 0, activeAtMonthEnd: 6 },
];

describe("amounts in KES from cents", () => {
  it("formats by integer arithmetic", () => {
    expect([0, 7, 99, 100, 150_000, 870_099, -2_550].map(kesFromCents)).toEqual([
      "0.00",
      "0.07",
      "0.99",
      "1.00",
      "1500.00",
      "8700.99",
      "-25.50",
    ]);
    expect(() => kesFromCents(1.5)).toThrow(RangeError);
  });
});

describe("revenue report", () => {
  it("a PNG chart of sensible size, with its text drawn, and the figures as CSV", async () => {
    const report = await revenueReport(ROWS, { isp: "Kibera Net" });
    // Look at it: REPORT_PNG=/tmp/report.png npx vitest run test/admin/report.test.ts
    if (process.env.REPORT_PNG) writeFileSync(process.env.REPORT_PNG, report.png);
    expect([...report.png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const image = PNG.sync.read(Buffer.from(report.png));
    expect(image.width).toBe(REPORT_WIDTH_PX);
    expect(image.height).toBeGreaterThan(450);
    expect(image.height).toBeLessThan(750);
    expect(report.png.length).toBeGreaterThan(20_000);
    expect(report.png.length).toBeLessThan(500_000);
    // The title is drawn (dark pixels in the top band, centred): a font was found and used.
    expect(chartFont().files.length).toBeGreaterThan(0);
    let dark = 0;
    for (let y = 0; y < 70; y++) {
      for (let x = 400; x < 800; x++) if (image.data[(y * image.width + x) * 4]! < 100) dark++;
    }
    expect(dark).toBeGreaterThan(500);

    expect(report.months).toEqual(["2026-01", "2026-02", "2026-03", "2026-04"]);
    expect(report.csv).toBe(
      [
        CSV_HEADER.join(","),
        "2026-01,1500.00,1,1",
        "2026-02,3000.05,2,2",
        "2026-03,8700.99,7,6",
        "2026-04,0.07,0,6",
        "",
      ].join("\n"),
    );
  });

  it("a month ends the report there", async () => {
    const report = await revenueReport(ROWS, { isp: "Kibera Net", month: "2026-02" });
    expect(report.months).toEqual(["2026-01", "2026-02"]);
    expect(report.csv.trim().split("\n")).toHaveLength(3);
    await expect(revenueReport(ROWS, { isp: "X", month: "March" })).rejects.toThrow(RangeError);
  });

  describe("from the database", () => {
    let database: Database;
    beforeAll(async () => {
      database = await createTestDatabase();
    });
    afterAll(async () => {
      await database.close();
    });

    it("the CSV's figures for this month are /stats' figures", async () => {
      const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-02T08:00:00Z"));
      const plan = await createPlan(ctx.db, { priceCents: 99_950 });
      const { customer } = await activeSubscriber(ctx, plan.id);
      await activeSubscriber(ctx, plan.id, "Otieno Ouma");
      // `created_at` is stamped by the database's clock: put it on the fake one.
      await ctx.db.update(subscriptions).set({ createdAt: clock.now() });
      clock.set("2026-05-31T20:59:00Z"); // 23:59 on May 31 in Nairobi
      await applyPayment(ctx, admin, {
        customerId: customer.id,
        method: "cash",
        provider: "cash",
        providerRef: "late-may",
        amountCents: 1_001,
      });
      const now = new Date("2026-05-31T20:59:30Z");
      const stats = await businessStats(ctx.db, new FakeClock(now), { timezone: "Africa/Nairobi" });
      const rows = await monthlyRevenue(ctx.db, { months: 3, timezone: "Africa/Nairobi", now });
      const { csv } = await revenueReport(rows, { isp: "Kibera Net" });
      // Plain fields (no quoting needed): a split reads it back.
      const [header, ...lines] = csv
        .trim()
        .split("\n")
        .map((l) => l.split(","));
      const records = lines.map((l) => Object.fromEntries(header!.map((h, i) => [h, l[i]])));
      expect(records.at(-1)).toEqual({
        month: "2026-05",
        collected_kes: kesFromCents(stats.collectedThisMonthCents),
        new_subscribers: "2",
        active_at_month_end: String(stats.active + stats.suspended),
      });
      expect(records.at(-1)!.collected_kes).toBe("2009.01"); // 2 × 999.50 + 10.01
    });
  });
});
