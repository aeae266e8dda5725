import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import type { RouterApi, RouterRow } from "../../src/network/connection.ts";
import { ensureWalledGarden, walledGardenEntries } from "../../src/portal/index.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { portalApp, routerRow } from "./world.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("on the router", () => {
  it("generates a login.html that sends the hotspot's variables to the portal", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const res = await portalApp(ctx).request(`/portal/${router.name}/login.html`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe('attachment; filename="login.html"');
    const page = await res.text();
    expect(page).toContain(`action="https://wifi.example.net/portal/${router.name}" method="get"`);
    for (const variable of ["$(link-login-only)", "$(link-orig)", "$(mac)", "$(ip)", "$(error)"])
      expect(page).toContain(`value="${variable}"`);
    expect(page).toContain('<html lang="en">');
  });

  it("computes the walled-garden entries for the portal host and converges a router to them", async () => {
    expect(walledGardenEntries("https://wifi.example.net/portal")).toEqual([
      {
        menu: "/ip/hotspot/walled-garden",
        values: {
          action: "allow",
          "dst-host": "wifi.example.net",
          "dst-port": "443",
          comment: "tandao:portal",
        },
      },
    ]);
    expect(walledGardenEntries("http://192.0.2.10:3000")[0]).toEqual({
      menu: "/ip/hotspot/walled-garden/ip",
      values: {
        action: "accept",
        "dst-address": "192.0.2.10",
        protocol: "tcp",
        "dst-port": "3000",
        comment: "tandao:portal",
      },
    });
    // A router's two menus, as far as this needs: print by comment, add, set, remove.
    const tables = new Map<string, RouterRow[]>();
    let next = 1;
    const commands: string[] = [];
    const api: RouterApi = {
      async run(command, params = []) {
        commands.push(command);
        const menu = command.slice(0, command.lastIndexOf("/"));
        const verb = command.slice(command.lastIndexOf("/") + 1);
        const rows = tables.get(menu) ?? [];
        tables.set(menu, rows);
        const words = Object.fromEntries(params.map((p) => p.slice(1).split(/=(.*)/s).slice(0, 2)));
        if (verb === "print") return rows.filter((r) => r.comment === words.comment);
        if (verb === "add") rows.push({ ".id": `*${next++}`, ...words });
        if (verb === "set") Object.assign(rows.find((r) => r[".id"] === words[".id"])!, words);
        if (verb === "remove") {
          const ids = new Set(String(words[".id"]).split(","));
          tables.set(
            menu,
            rows.filter((r) => !ids.has(r[".id"]!)),
          );
        }
        return [];
      },
    };
    tables.set("/ip/hotspot/walled-garden", [
      { ".id": "*99", "dst-host": "other.example", comment: "the admin's own" },
      { ".id": "*98", "dst-host": "old.example.net", comment: "tandao:portal" },
    ]);
    const entries = walledGardenEntries("https://wifi.example.net/portal");
    expect(await ensureWalledGarden(api, entries)).toEqual({ added: 1, updated: 0, removed: 1 });
    expect(tables.get("/ip/hotspot/walled-garden")!.map((r) => r["dst-host"])).toEqual([
      "other.example",
      "wifi.example.net",
    ]);
    commands.length = 0;
    expect(await ensureWalledGarden(api, entries)).toEqual({ added: 0, updated: 0, removed: 0 });
    expect(commands.every((c) => c.endsWith("/print"))).toBe(true);
  });
});
