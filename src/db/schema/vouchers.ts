import { bigint, index, integer, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, createdAt, id } from "./columns.ts";
import { plans } from "./plans.ts";
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
