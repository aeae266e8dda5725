import { sql } from "drizzle-orm";
import { queryRows } from "../db/client.ts";
import { routers } from "../db/schema/index.ts";
import { auditMany } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { enqueueProvisioning } from "./outbox.ts";

/**
 * Codes a router was seen serving (reconciliation: a session logged in with the code, or time used
 * on it). A sold code is marked redeemed as of when that use began, so an operator can tell used
 * codes from codes still in a drawer.
 *
 * A code sold or printed for no router in particular is a hotspot user on every router, and each
 * router counts its time and data apart: with three sites, three times the allowance, and one code
 * online at three sites at once. Its first router seen serving it keeps it: the code is bound there
 * and taken off the others (their sessions with it dropped), as a code sold for a router would be.
 * Codes not sold, or expired, are left as they are.
 */
export async function markVouchersRedeemed(
  ctx: Pick<BillingContext, "db" | "clock">,
  actor: Actor,
  routerId: number,
  uses: ReadonlyArray<{ voucherId: number; since: Date }>,
): Promise<{ redeemed: number[]; bound: number[] }> {
  if (uses.length === 0) return { redeemed: [], bound: [] };
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const payload = uses.map((u) => ({ id: u.voucherId, since: u.since.toISOString() }));
    const due = sql`(v.status = 'sold' or (v.status = 'redeemed' and v.router_id is null))`;
    // Locked in id order, as every writer of several vouchers does (markVouchersSold, expiry). The
    // set list reads each row as it was, so `was_sold` and `bound` say what this statement changed.
    const changed = await queryRows<{ id: number; was_sold: boolean; bound: boolean }>(
      tx,
      sql`with use as (select * from jsonb_to_recordset(${JSON.stringify(payload)}::jsonb) as u(id int, since timestamptz)),
          due as materialized (
            select v.id, v.status, v.router_id from vouchers v where v.id in (select id from use) and ${due}
            order by v.id for no key update
          )
          update vouchers v set status = 'redeemed',
            redeemed_at = case when v.status = 'sold'
              then greatest(least(use.since, ${now.toISOString()}::timestamptz), v.sold_at)
              else v.redeemed_at end,
            router_id = coalesce(v.router_id, ${routerId})
          from due join use on use.id = due.id
          where v.id = due.id and ${due}
          returning v.id, due.status = 'sold' as was_sold, due.router_id is null as bound`,
    );
    const redeemed = changed
      .filter((c) => c.was_sold)
      .map((c) => Number(c.id))
      .sort((a, b) => a - b);
    const bound = changed
      .filter((c) => c.bound)
      .map((c) => Number(c.id))
      .sort((a, b) => a - b);
    await auditMany(tx, actor, now, [
      ...redeemed.map((id) => ({ action: "voucher.redeemed", entity: "voucher", entityId: id })),
      ...bound.map((id) => ({
        action: "voucher.bound_to_router",
        entity: "voucher",
        entityId: id,
        details: { routerId },
      })),
    ]);
    // To each router in a row of its own: the one it is bound to keeps it, the others remove it.
    // One row for every router would hold another lock key than the voucher's rows for its router
    // (its expiry's removal), and the two could be delivered at once: this one, having read the
    // voucher before it expired, would put it back.
    if (bound.length > 0) {
      const everyRouter = await tx.select({ id: routers.id }).from(routers).orderBy(routers.id);
      for (const voucherId of bound)
        for (const router of everyRouter)
          await enqueueProvisioning(tx, now, { action: "ensure_voucher", voucherId, routerId: router.id });
    }
    return { redeemed, bound };
  });
}
