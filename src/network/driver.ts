import { type RouterApi, type RouterRow, RouterTrapError } from "./connection.ts";
import type { DesiredHotspotUser, DesiredProfile, DesiredSecret } from "./desired.ts";
import { formatDuration, parseDuration } from "./durations.ts";
import { isOurs } from "./markers.ts";

/**
 * Idempotent RouterOS operations: each `ensure…` reads the entry (found by its Tandao marker), then
 * adds it or sets only what differs. Running one twice changes nothing the second time.
 */

export const menus = {
  pppProfile: "/ppp/profile",
  pppSecret: "/ppp/secret",
  pppActive: "/ppp/active",
  hotspotProfile: "/ip/hotspot/user/profile",
  hotspotUser: "/ip/hotspot/user",
  hotspotActive: "/ip/hotspot/active",
} as const;

/** An entry with the name Tandao needs exists on the router but was not made by Tandao. */
export class RouterConflictError extends Error {
  override readonly name = "RouterConflictError";
}

export type Change = "created" | "updated" | "unchanged" | "removed" | "absent";

export interface EnsureResult {
  change: Change;
  /** Active sessions disconnected so that the change applies now. */
  kicked: number;
}

const yesNo = (b: boolean) => (b ? "yes" : "no");
const isTrue = (v: string | undefined) => v === "true" || v === "yes";

export const profileMenu = (kind: DesiredProfile["kind"]) =>
  kind === "ppp" ? menus.pppProfile : menus.hotspotProfile;

/**
 * The parameter of a profile that carries Tandao's marker. RouterOS has no `comment` on hotspot user
 * profiles (it refuses one as an unknown parameter), so there the marker is the `on-login` script,
 * written as a script comment (`# tandao:plan:3`) that does nothing when a user logs in.
 */
export const profileMarkerParam = (kind: DesiredProfile["kind"]) => (kind === "ppp" ? "comment" : "on-login");

/** The value of `profileMarkerParam` that marks a profile with `marker`. */
export const profileMarkerValue = (kind: DesiredProfile["kind"], marker: string) =>
  kind === "ppp" ? marker : `# ${marker}`;

/** The marker a profile row carries (`tandao:plan:N`), if any. */
export function profileMarkerOf(kind: DesiredProfile["kind"], row: RouterRow): string | undefined {
  const value = row[profileMarkerParam(kind)];
  return kind === "ppp" ? value : value?.replace(/^#\s*/, "");
}

export function profileDiff(row: RouterRow, want: DesiredProfile): Record<string, string> {
  const diff: Record<string, string> = {};
  if ((row["rate-limit"] ?? "") !== want.rateLimit) diff["rate-limit"] = want.rateLimit;
  const param = profileMarkerParam(want.kind);
  const marker = profileMarkerValue(want.kind, want.comment);
  if (row[param] !== marker) diff[param] = marker;
  if (row.name !== want.name) diff.name = want.name;
  return diff;
}

export function secretDiff(row: RouterRow, want: DesiredSecret): Record<string, string> {
  const diff: Record<string, string> = {};
  if (row.name !== want.name) diff.name = want.name;
  if ((row.password ?? "") !== want.password) diff.password = want.password;
  if (row.service !== "pppoe") diff.service = "pppoe";
  if (row.profile !== want.profile) diff.profile = want.profile;
  if (isTrue(row.disabled) !== want.disabled) diff.disabled = yesNo(want.disabled);
  if (row.comment !== want.comment) diff.comment = want.comment;
  return diff;
}

/** A session must be dropped when its access is withdrawn or its speed changes. */
export function secretNeedsKick(row: RouterRow, want: DesiredSecret | null): boolean {
  if (!want) return true;
  return (want.disabled && !isTrue(row.disabled)) || row.profile !== want.profile || row.name !== want.name;
}

export function hotspotUserDiff(row: RouterRow, want: DesiredHotspotUser): Record<string, string> {
  const diff: Record<string, string> = {};
  if (row.name !== want.name) diff.name = want.name;
  if ((row.password ?? "") !== want.password) diff.password = want.password;
  if (row.profile !== want.profile) diff.profile = want.profile;
  if (parseDuration(row["limit-uptime"] ?? "") !== want.limitUptimeSeconds) {
    diff["limit-uptime"] = formatDuration(want.limitUptimeSeconds);
  }
  if (Number(row["limit-bytes-total"] ?? 0) !== (want.limitBytesTotal ?? 0)) {
    diff["limit-bytes-total"] = String(want.limitBytesTotal ?? 0);
  }
  if (isTrue(row.disabled)) diff.disabled = "no";
  if (row.comment !== want.comment) diff.comment = want.comment;
  return diff;
}

export function hotspotUserNeedsKick(row: RouterRow, want: DesiredHotspotUser | null): boolean {
  if (!want) return true;
  return row.profile !== want.profile || row.name !== want.name;
}

const words = (values: Record<string, string>) => Object.entries(values).map(([k, v]) => `=${k}=${v}`);

async function addOrConflict(api: RouterApi, menu: string, values: Record<string, string>): Promise<void> {
  try {
    await api.run(`${menu}/add`, words(values));
  } catch (error) {
    if (error instanceof RouterTrapError && /already (exists|have)/.test(error.message)) {
      // A hotspot user's name is a voucher code, which must not reach errors, alert SMS or logs.
      const entry = menu === menus.hotspotUser ? `for ${values.comment}` : `"${values.name}"`;
      throw new RouterConflictError(
        `${menu} ${entry} already exists on the router without a Tandao marker; rename or remove it there`,
      );
    }
    throw error;
  }
}

/**
 * Removes entries by id, in one command while all are there. Gone already (a session that hung up,
 * an entry removed by hand): the goal is reached for it. But RouterOS refuses a whole list when one
 * of its ids is gone, so the others are then removed one by one: a subscriber's stale session that
 * hung up must not leave their live one online, nor one plan member's a whole plan's at old speed.
 */
export async function removeIds(api: RouterApi, menu: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  try {
    await api.run(`${menu}/remove`, [`=.id=${ids.join(",")}`]);
  } catch (error) {
    if (!(error instanceof RouterTrapError && /no such item/.test(error.message))) throw error;
    if (ids.length > 1) for (const id of ids) await removeIds(api, menu, [id]);
  }
}

/**
 * `createOnly`: a profile found is left as it is (a writer without the profile's lease, whose plan
 * may be older than the router's profile, must not write its speed).
 */
export async function ensureProfile(
  api: RouterApi,
  want: DesiredProfile,
  options: { createOnly?: boolean } = {},
  retried = false,
): Promise<EnsureResult> {
  const menu = profileMenu(want.kind);
  const rows = await api.run(`${menu}/print`, [`?name=${want.name}`]);
  const row = rows[0];
  if (!row) {
    try {
      await addOrConflict(api, menu, {
        name: want.name,
        "rate-limit": want.rateLimit,
        [profileMarkerParam(want.kind)]: profileMarkerValue(want.kind, want.comment),
      });
    } catch (error) {
      // Another writer (the delivery worker and a reconciliation run) created it since we looked.
      if (error instanceof RouterConflictError && !retried) return ensureProfile(api, want, options, true);
      throw error;
    }
    return { change: "created", kicked: 0 };
  }
  if (!isOurs(profileMarkerOf(want.kind, row))) {
    throw new RouterConflictError(`${menu} "${want.name}" exists on the router without a Tandao marker`);
  }
  const diff = profileDiff(row, want);
  if (options.createOnly || Object.keys(diff).length === 0) return { change: "unchanged", kicked: 0 };
  await api.run(`${menu}/set`, [`=.id=${row[".id"]}`, ...words(diff)]);
  return { change: "updated", kicked: 0 };
}

/**
 * Removes a plan's profile made by Tandao (found by its marker). RouterOS refuses ("profile is in
 * use") while secrets or hotspot users still name it: the error is the router's.
 */
export async function removeProfile(
  api: RouterApi,
  kind: DesiredProfile["kind"],
  marker: string,
): Promise<EnsureResult> {
  const menu = profileMenu(kind);
  const rows = await api.run(`${menu}/print`, [
    `?${profileMarkerParam(kind)}=${profileMarkerValue(kind, marker)}`,
    "=.proplist=.id",
  ]);
  if (rows.length === 0) return { change: "absent", kicked: 0 };
  await removeIds(
    api,
    menu,
    rows.map((r) => r[".id"]!),
  );
  return { change: "removed", kicked: 0 };
}

export async function kickPppSessions(api: RouterApi, name: string): Promise<number> {
  const sessions = await api.run(`${menus.pppActive}/print`, [`?name=${name}`, "=.proplist=.id,name"]);
  await removeIds(
    api,
    menus.pppActive,
    sessions.map((s) => s[".id"]!),
  );
  return sessions.length;
}

export async function kickHotspotSessions(api: RouterApi, user: string): Promise<number> {
  const sessions = await api.run(`${menus.hotspotActive}/print`, [`?user=${user}`, "=.proplist=.id,user"]);
  await removeIds(
    api,
    menus.hotspotActive,
    sessions.map((s) => s[".id"]!),
  );
  return sessions.length;
}

/**
 * Drops the sessions of `name` when no entry of that name is left in `menu`. An entry without
 * Tandao's marker may carry the name (the router admin's own): its sessions are not Tandao's to drop.
 */
async function kickOrphanSessions(
  api: RouterApi,
  menu: string,
  name: string,
  kick: (api: RouterApi, name: string) => Promise<number>,
): Promise<number> {
  const owners = await api.run(`${menu}/print`, [`?name=${name}`, "=.proplist=.id"]);
  return owners.length === 0 ? kick(api, name) : 0;
}

export function secretValues(want: DesiredSecret): Record<string, string> {
  return {
    name: want.name,
    password: want.password,
    service: "pppoe",
    profile: want.profile,
    comment: want.comment,
    disabled: yesNo(want.disabled),
  };
}

export function hotspotUserValues(want: DesiredHotspotUser): Record<string, string> {
  return {
    name: want.name,
    password: want.password,
    profile: want.profile,
    "limit-uptime": formatDuration(want.limitUptimeSeconds),
    "limit-bytes-total": String(want.limitBytesTotal ?? 0),
    comment: want.comment,
  };
}

/**
 * Names whose sessions must be dropped: an entry was changed in a way that only applies to a
 * session from its next connection (a new profile, a new name), and the drop may not have happened
 * yet. A delivery whose connection broke after the change leaves the entry as wanted, so its retry
 * sees nothing to change: the names are what tells it the drop is still owed. Filled before the
 * change is written (its reply may be lost while the router applies it), emptied as drops happen.
 */
export interface OwedDrops {
  names: Set<string>;
}

/**
 * Drops the sessions owed (see `OwedDrops`). A name other than the entry's own (`own`) is one it
 * was renamed from, perhaps a retry later: the router's admin may have given it to another account
 * since, whose session is not this entry's to drop, so it is dropped only while no entry holds it.
 */
async function dropOwed(
  api: RouterApi,
  owed: OwedDrops,
  own: string,
  menu: string,
  kick: (api: RouterApi, name: string) => Promise<number>,
): Promise<number> {
  let kicked = 0;
  for (const name of [...owed.names]) {
    kicked += name === own ? await kick(api, name) : await kickOrphanSessions(api, menu, name, kick);
    owed.names.delete(name);
  }
  return kicked;
}

/**
 * Creates, corrects, enables or disables the subscriber's PPPoE secret; drops the session when
 * needed, and those in `owed` (see `OwedDrops`).
 */
export async function ensureSecret(
  api: RouterApi,
  want: DesiredSecret,
  owed: OwedDrops = { names: new Set() },
): Promise<EnsureResult> {
  const rows = await api.run(`${menus.pppSecret}/print`, [`?comment=${want.comment}`]);
  const [row, ...duplicates] = rows;
  if (!row) {
    await addOrConflict(api, menus.pppSecret, secretValues(want));
    return {
      change: "created",
      kicked: await dropOwed(api, owed, want.name, menus.pppSecret, kickPppSessions),
    };
  }
  await removeIds(
    api,
    menus.pppSecret,
    duplicates.map((d) => d[".id"]!),
  );
  const diff = secretDiff(row, want);
  if (Object.keys(diff).length === 0) {
    // A disabled secret must have no session. One may be left from an earlier delivery whose
    // connection broke between the `set` and the drop: the entry already matches, the drop is redone.
    if (want.disabled) owed.names.add(row.name!);
    return {
      change: "unchanged",
      kicked: await dropOwed(api, owed, want.name, menus.pppSecret, kickPppSessions),
    };
  }
  if (secretNeedsKick(row, want)) owed.names.add(row.name!);
  await api.run(`${menus.pppSecret}/set`, [`=.id=${row[".id"]}`, ...words(diff)]);
  return {
    change: "updated",
    kicked: await dropOwed(api, owed, want.name, menus.pppSecret, kickPppSessions),
  };
}

/**
 * Removes the subscriber's secret and drops its sessions. `name` (the subscriber's user name, when
 * known) lets a retry drop a session left by an earlier removal whose connection broke before the drop.
 */
export async function removeSecret(api: RouterApi, comment: string, name?: string): Promise<EnsureResult> {
  const rows = await api.run(`${menus.pppSecret}/print`, [`?comment=${comment}`]);
  if (rows.length === 0) {
    const kicked = name ? await kickOrphanSessions(api, menus.pppSecret, name, kickPppSessions) : 0;
    return { change: "absent", kicked };
  }
  await removeIds(
    api,
    menus.pppSecret,
    rows.map((r) => r[".id"]!),
  );
  let kicked = 0;
  for (const row of rows) kicked += await kickPppSessions(api, row.name!);
  return { change: "removed", kicked };
}

export async function ensureHotspotUser(api: RouterApi, want: DesiredHotspotUser): Promise<EnsureResult> {
  const rows = await api.run(`${menus.hotspotUser}/print`, [`?comment=${want.comment}`]);
  const [row, ...duplicates] = rows;
  if (!row) {
    await addOrConflict(api, menus.hotspotUser, hotspotUserValues(want));
    return { change: "created", kicked: 0 };
  }
  await removeIds(
    api,
    menus.hotspotUser,
    duplicates.map((d) => d[".id"]!),
  );
  const diff = hotspotUserDiff(row, want);
  if (Object.keys(diff).length === 0) return { change: "unchanged", kicked: 0 };
  await api.run(`${menus.hotspotUser}/set`, [`=.id=${row[".id"]}`, ...words(diff)]);
  const kicked = hotspotUserNeedsKick(row, want) ? await kickHotspotSessions(api, row.name!) : 0;
  return { change: "updated", kicked };
}

/** As `removeSecret`, for a voucher's hotspot user (`name`: the voucher code). */
export async function removeHotspotUser(
  api: RouterApi,
  comment: string,
  name?: string,
): Promise<EnsureResult> {
  const rows = await api.run(`${menus.hotspotUser}/print`, [`?comment=${comment}`]);
  if (rows.length === 0) {
    const kicked = name ? await kickOrphanSessions(api, menus.hotspotUser, name, kickHotspotSessions) : 0;
    return { change: "absent", kicked };
  }
  await removeIds(
    api,
    menus.hotspotUser,
    rows.map((r) => r[".id"]!),
  );
  let kicked = 0;
  for (const row of rows) kicked += await kickHotspotSessions(api, row.name!);
  return { change: "removed", kicked };
}

export interface ActiveSessions {
  ppp: Array<{ id: string; name: string; address: string; uptime: string; callerId: string }>;
  hotspot: Array<{ id: string; user: string; address: string; uptime: string; macAddress: string }>;
}

export async function listActiveSessions(api: RouterApi): Promise<ActiveSessions> {
  const [ppp, hotspot] = await Promise.all([
    api.run(`${menus.pppActive}/print`),
    api.run(`${menus.hotspotActive}/print`),
  ]);
  return {
    ppp: ppp.map((r) => ({
      id: r[".id"]!,
      name: r.name ?? "",
      address: r.address ?? "",
      uptime: r.uptime ?? "",
      callerId: r["caller-id"] ?? "",
    })),
    hotspot: hotspot.map((r) => ({
      id: r[".id"]!,
      user: r.user ?? "",
      address: r.address ?? "",
      uptime: r.uptime ?? "",
      macAddress: r["mac-address"] ?? "",
    })),
  };
}
