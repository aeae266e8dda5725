import { bigint, index, integer, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, createdAt, id } from "./columns.ts";
import { periodUnits, plans } from "./plans.ts";
import { routers } from "./routers.ts";

export const voucherStatuses = ["available", "sold", "redeemed", "expired"] as const;
export type VoucherStatus = (typeof voucherStatuses)[number];

export const voucherBatches = pgTable("voucher_batches", {
  id: id(),
  planId: integer("plan_id")
    .notNull()
    .references(() => plans.id),
  routerId: integer("router_id").references(() => routers.id),
  quantity: integer("quantity").notNull(),
  createdBy: text("created_by").notNull(),
  createdAt: createdAt(),
  /**
   * The plan's terms as printed on the batch's cards (validity, connected time, data cap): what a
   * reseller's customer pays for, whatever the plan says when the code is sold. Null: printed
   * before these were kept (the plan's at the sale).
   */
  periodUnit: text("period_unit", { enum: periodUnits }),
  periodCount: integer("period_count"),
  timeLimitSeconds: integer("time_limit_seconds"),
  dataCapBytes: bigint("data_cap_bytes", { mode: "number" }),
});

export const vouchers = pgTable(
  "vouchers",
  {
    id: id(),
    batchId: integer("batch_id").references(() => voucherBatches.id),
    planId: integer("plan_id")
      .notNull()
      .references(() => plans.id),
    routerId: integer("router_id").references(() => routers.id),
    code: text("code").notNull(),
    status: text("status", { enum: voucherStatuses }).notNull().default("available"),
    soldToPhone: text("sold_to_phone"),
    soldAt: at("sold_at"),
    redeemedAt: at("redeemed_at"),
    /**
     * What the buyer bought, fixed when sold: connected time and data on the router (a later edit of
     * the plan applies to codes sold after it). Null uptime: sold before these were kept (the plan's).
     */
    limitUptimeSeconds: integer("limit_uptime_seconds"),
    /** Null: no data cap (when `limitUptimeSeconds` is set). */
    limitBytesTotal: bigint("limit_bytes_total", { mode: "number" }),
    /** Unsold vouchers expire at this instant; a sold voucher expires after its plan's period. */
    expiresAt: at("expires_at").notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("vouchers_code_uq").on(t.code),
    index("vouchers_status_idx").on(t.status, t.expiresAt),
    // A printed batch marked sold whole (`/sold batch <number>`).
    index("vouchers_batch_idx").on(t.batchId),
  ],
);
