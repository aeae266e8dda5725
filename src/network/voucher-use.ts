import type { RouterRow } from "./connection.ts";
import { parseDuration } from "./durations.ts";
import { parseMarker } from "./markers.ts";

export interface VoucherUse {
  voucherId: number;
  /** When the use began, as far as the router tells: a live session's start, else when it was seen. */
  since: Date;
}

/**
 * The vouchers a router shows in use: a hotspot session logged in with the code now, or time
 * already used on the code's hotspot user (RouterOS adds a session's time to the user's `uptime`).
 */
export function voucherUsesOn(users: RouterRow[], active: RouterRow[], now: Date): VoucherUse[] {
  const sessionSeconds = new Map<string, number>();
  for (const session of active) {
    if (!session.user) continue;
    const seconds = parseDuration(session.uptime ?? "") ?? 0;
    sessionSeconds.set(session.user, Math.max(seconds, sessionSeconds.get(session.user) ?? 0));
  }
  const uses: VoucherUse[] = [];
  for (const user of users) {
    const marker = parseMarker(user.comment);
    if (marker?.kind !== "voucher" || !user.name) continue;
    const live = sessionSeconds.get(user.name);
    if (live !== undefined)
      uses.push({ voucherId: marker.id, since: new Date(now.getTime() - live * 1_000) });
    else if ((parseDuration(user.uptime ?? "") ?? 0) > 0) uses.push({ voucherId: marker.id, since: now });
  }
  return uses;
}
