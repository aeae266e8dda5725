import type { RouterApi, RouterRow } from "./connection.ts";
import { menus } from "./driver.ts";
import { parseDuration } from "./durations.ts";
import type { RouterPool } from "./pool.ts";

/**
 * Whether a subscriber is connected now: their session in `/ppp/active` (PPPoE, by secret name) or
 * `/ip/hotspot/active` (hotspot, by user). Read only; one print with a query, never a change.
 */

export type SessionKind = "pppoe" | "hotspot";

export interface ActiveSession {
  /** The address the router gave the session ("" when it reports none). */
  address: string;
  /** How long the session has been up, in seconds (null when the router's uptime cannot be read). */
  uptimeSeconds: number | null;
  /** The caller's MAC address (PPPoE `caller-id`, hotspot `mac-address`), "" if none. */
  callerId: string;
}

/** The session of `username` on the router behind `api`, or null when it is not connected. */
export async function findActiveSession(
  api: RouterApi,
  kind: SessionKind,
  username: string,
): Promise<ActiveSession | null> {
  const rows =
    kind === "pppoe"
      ? await api.run(`${menus.pppActive}/print`, [
          `?name=${username}`,
          "=.proplist=.id,name,address,uptime,caller-id",
        ])
      : await api.run(`${menus.hotspotActive}/print`, [
          `?user=${username}`,
          "=.proplist=.id,user,address,uptime,mac-address",
        ]);
  // A query answers exact matches; checked again so that a router ignoring it cannot mislead.
  const row = rows.find((r: RouterRow) => (kind === "pppoe" ? r.name : r.user) === username);
  if (!row) return null;
  return {
    address: row.address ?? "",
    uptimeSeconds: row.uptime ? parseDuration(row.uptime) : null,
    callerId: (kind === "pppoe" ? row["caller-id"] : row["mac-address"]) ?? "",
  };
}

/**
 * As `findActiveSession`, through the pool's connection to `routerId`. A router whose circuit is
 * open is not waited on: it throws `RouterUnavailableError` at once, as any unreachable router does.
 */
export async function activeSessionOn(
  pool: RouterPool,
  routerId: number,
  kind: SessionKind,
  username: string,
): Promise<ActiveSession | null> {
  pool.assertAvailable(routerId);
  return findActiveSession(await pool.get(routerId), kind, username);
}
