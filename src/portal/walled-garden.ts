import { isIP } from "node:net";
import type { RouterApi } from "../network/connection.ts";

/**
 * What a hotspot must let through before login so that the captive portal can be shown: the
 * portal's host in `/ip/hotspot/walled-garden` (`dst-host`), or its address in
 * `/ip/hotspot/walled-garden/ip` when the portal is reached by IP. Each entry carries the marker
 * `tandao:portal` in its comment, so it is found again and nothing else is touched.
 */
export const WALLED_GARDEN_MARKER = "tandao:portal";

export interface WalledGardenEntry {
  menu: "/ip/hotspot/walled-garden" | "/ip/hotspot/walled-garden/ip";
  values: Record<string, string>;
}

export function walledGardenEntries(portalUrl: string): WalledGardenEntry[] {
  const url = new URL(portalUrl);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  if (isIP(host)) {
    return [
      {
        menu: "/ip/hotspot/walled-garden/ip",
        values: {
          action: "accept",
          "dst-address": host,
          protocol: "tcp",
          "dst-port": port,
          comment: WALLED_GARDEN_MARKER,
        },
      },
    ];
  }
  return [
    {
      menu: "/ip/hotspot/walled-garden",
      values: { action: "allow", "dst-host": host, "dst-port": port, comment: WALLED_GARDEN_MARKER },
    },
  ];
}

/**
 * Makes the router's walled garden hold exactly `entries` among the entries marked as the
 * portal's: adds what is missing, sets what differs, removes marked entries no longer wanted.
 * Idempotent: a second run changes nothing.
 */
export async function ensureWalledGarden(
  api: RouterApi,
  entries: WalledGardenEntry[],
): Promise<{ added: number; updated: number; removed: number }> {
  const counts = { added: 0, updated: 0, removed: 0 };
  for (const menu of ["/ip/hotspot/walled-garden", "/ip/hotspot/walled-garden/ip"] as const) {
    const wanted = entries.filter((e) => e.menu === menu);
    const rows = await api.run(`${menu}/print`, [`?comment=${WALLED_GARDEN_MARKER}`]);
    const unused = [...rows];
    for (const want of wanted) {
      const key = want.values["dst-host"] ?? want.values["dst-address"];
      const index = unused.findIndex((r) => (r["dst-host"] ?? r["dst-address"]) === key);
      const row = index >= 0 ? unused.splice(index, 1)[0] : undefined;
      if (!row) {
        await api.run(
          `${menu}/add`,
          Object.entries(want.values).map(([k, v]) => `=${k}=${v}`),
        );
        counts.added++;
        continue;
      }
      const diff = Object.entries(want.values).filter(([k, v]) => row[k] !== v);
      if (diff.length > 0) {
        await api.run(`${menu}/set`, [`=.id=${row[".id"]}`, ...diff.map(([k, v]) => `=${k}=${v}`)]);
        counts.updated++;
      }
    }
    if (unused.length > 0) {
      await api.run(`${menu}/remove`, [`=.id=${unused.map((r) => r[".id"]).join(",")}`]);
      counts.removed += unused.length;
    }
  }
  return counts;
}
