import { and, desc, eq, gt, gte, inArray } from "drizzle-orm";
import { DAY } from "../clock.ts";
import type { Executor } from "../db/client.ts";
import { plans, vouchers } from "../db/schema/index.ts";

/**
 * How far back a phone's own codes can be looked up: as long as a month's voucher lasts, so every
 * code still valid from an hourly to a monthly plan is found, and no longer, so a number passed on
 * to someone else does not show its previous owner's codes.
 */
export const RECENT_VOUCHER_DAYS = 31;
/** The most codes looked up at once: a handful is what a buyer who lost a message is looking for. */
export const RECENT_VOUCHER_LIMIT = 5;

export interface VoucherBought {
  code: string;
  plan: { name: string; nameSw: string | null };
  expiresAt: Date;
}

/**
 * Codes sold to `phone` (the number that paid for them, see `sellVoucherInTx`) in the last
 * `RECENT_VOUCHER_DAYS` that are still usable: sold or in use, not past their expiry even if the
 * expiry job has not run yet. Newest first. A read only: nothing is sent or recorded. Printed codes
 * sold by a reseller name no phone, so they are never found.
 */
export async function recentVouchersSoldTo(
  db: Executor,
  phone: string,
  now: Date,
  limit = RECENT_VOUCHER_LIMIT,
): Promise<VoucherBought[]> {
  if (phone === "") return [];
  const rows = await db
    .select({
      code: vouchers.code,
      expiresAt: vouchers.expiresAt,
      name: plans.name,
      nameSw: plans.nameSw,
    })
    .from(vouchers)
    .innerJoin(plans, eq(plans.id, vouchers.planId))
    .where(
      and(
        // Status and expiry: `vouchers_status_idx` narrows the search to the codes live now.
        inArray(vouchers.status, ["sold", "redeemed"]),
        gt(vouchers.expiresAt, now),
        eq(vouchers.soldToPhone, phone),
        gte(vouchers.soldAt, new Date(now.getTime() - RECENT_VOUCHER_DAYS * DAY)),
      ),
    )
    .orderBy(desc(vouchers.soldAt), desc(vouchers.id))
    .limit(limit);
  return rows.map((r) => ({
    code: r.code,
    plan: { name: r.name, nameSw: r.nameSw ?? null },
    expiresAt: r.expiresAt,
  }));
}
