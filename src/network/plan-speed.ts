import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import type { RouterApi } from "./connection.ts";
import type { DesiredProfile } from "./desired.ts";
import { menus, removeIds } from "./driver.ts";

/**
 * RouterOS applies a profile's rate limit when a session connects: after a plan's speed changes,
 * the subscribers online keep the old one until they reconnect. So PPPoE sessions are dropped
 * (their routers dial again at once, onto the new speed). Hotspot sessions are not: a device logged
 * out of the hotspot does not log in again by itself, and its user would need the code again; a
 * voucher's new speed applies from its next login.
 *
 * The plan's row (`ensure_profile`, payload `rateLimitChanged`) names no router; it is split into
 * one row per router, each of which updates the profile and drops its sessions there. A router that
 * is down then retries only its own row, and the subscribers of the routers already done are not
 * reconnected again at each retry.
 *
 * A router that still has a row of an earlier speed change of the plan waiting (queued, or backing
 * off) gets no second one: that row reads the plan when it is delivered, so it brings the newest
 * speed, and its subscribers are reconnected once, not once per edit. A row claimed and not handed
 * back (being delivered, or by a worker that stopped) may have read the older speed already: the
 * router gets a row of its own then.
 */

/** Queues the plan's speed change for each router, in one statement. */
export async function splitRateLimitChange(db: Db, now: Date, planId: number): Promise<void> {
  const at = sql`${now.toISOString()}::timestamptz`;
  await db.execute(sql`
    insert into provisioning_outbox (router_id, action, payload, next_attempt_at, created_at)
    select r.id, 'ensure_profile', ${JSON.stringify({ planId, rateLimitChanged: true })}::jsonb, ${at}, ${at}
    from routers r
    where not exists (
      select 1 from provisioning_outbox o
      where o.router_id = r.id and o.status = 'pending' and o.action = 'ensure_profile'
        and o.subscription_id is null and o.voucher_id is null
        and o.payload->>'planId' = ${String(planId)} and o.payload->>'rateLimitChanged' = 'true'
        and o.claimed_until is null)`);
}

/** Drops the PPPoE sessions of every secret on `profile` (none for a hotspot profile); returns how many. */
export async function dropProfileSessions(api: RouterApi, profile: DesiredProfile): Promise<number> {
  if (profile.kind !== "ppp") return 0;
  const entries = await api.run(`${menus.pppSecret}/print`, [`?profile=${profile.name}`, "=.proplist=name"]);
  if (entries.length === 0) return 0;
  const names = new Set(entries.map((e) => e.name));
  const sessions = await api.run(`${menus.pppActive}/print`, ["=.proplist=.id,name"]);
  const ids = sessions.filter((s) => names.has(s.name)).map((s) => s[".id"]!);
  if (ids.length === 0) return 0;
  await removeIds(api, menus.pppActive, ids);
  return ids.length;
}
