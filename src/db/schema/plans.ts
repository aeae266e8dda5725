import { sql } from "drizzle-orm";
import { bigint, boolean, check, integer, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { cents, createdAt, id } from "./columns.ts";

export const planKinds = ["pppoe", "hotspot"] as const;
export type PlanKind = (typeof planKinds)[number];
export const periodUnits = ["months", "days", "hours"] as const;
export type PeriodUnit = (typeof periodUnits)[number];

export const plans = pgTable(
  "plans",
  {
    id: id(),
    code: text("code").notNull(),
    name: text("name").notNull(),
    /** The name in Kiswahili; null shows `name` in both languages. */
    nameSw: text("name_sw"),
    kind: text("kind", { enum: planKinds }).notNull(),
    priceCents: cents("price_cents").notNull(),
    periodUnit: text("period_unit", { enum: periodUnits }).notNull(),
    periodCount: integer("period_count").notNull().default(1),
    /** RouterOS `rx/tx` from the router's side, e.g. `5M/10M` (client upload 5M, download 10M). */
    rateLimit: text("rate_limit").notNull(),
    dataCapBytes: bigint("data_cap_bytes", { mode: "number" }),
    timeLimitSeconds: integer("time_limit_seconds"),
    active: boolean("active").notNull().default(true),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("plans_code_uq").on(t.code),
    check("plans_price_nonneg", sql`${t.priceCents} >= 0`),
    check("plans_period_positive", sql`${t.periodCount} > 0`),
  ],
);
