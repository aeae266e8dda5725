import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminCommand, PERMISSIONS } from "../../src/bots/admin/roles.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { adminRoles } from "../../src/db/schema/index.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { type AdminWorld, auditRows, lastText, OWNER, startAdminWorld } from "./world.ts";

/**
 * The permission table, command by command: each role a command is not for is refused with the
 * same answer and an audit row naming the command, whatever arguments follow. (What each command
 * does for the roles it is for is tested with the command.)
 */

let database: Database;
let world: AdminWorld;
const clock = new FakeClock("2026-06-01T06:00:00Z");
const idOf = Object.fromEntries(adminRoles.map((role, i) => [role, 6_900_000 + i])) as Record<string, number>;

beforeAll(async () => {
  database = await createTestDatabase();
  world = await startAdminWorld(billingContext(database.db, clock).ctx);
  for (const role of adminRoles)
    if (role !== "owner") await world.say(OWNER, `/admin_add ${idOf[role]} ${role} ${role}`);
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

const refusals = (Object.keys(PERMISSIONS) as AdminCommand[]).flatMap((command) =>
  adminRoles.filter((role) => !PERMISSIONS[command].includes(role)).map((role) => ({ command, role })),
);

describe("who may use which admin command", () => {
  it("owners may use every command", () => {
    for (const command of Object.keys(PERMISSIONS) as AdminCommand[])
      expect(PERMISSIONS[command], command).toContain("owner");
  });

  it.each(refusals)("/$command is refused to a $role, audited", async ({ command, role }) => {
    const user = idOf[role]!;
    const before = (await auditRows(database.db, "admin.refused", `tg:${user}`)).length;
    await world.say(user, `/${command} TD00001 1`);
    expect(lastText(world.fake, user)).toBe(
      `Your role (${role}) may not use /${command}. Ask an owner. /help lists what you may do.`,
    );
    const rows = await auditRows(database.db, "admin.refused", `tg:${user}`);
    expect(rows).toHaveLength(before + 1);
    expect(rows.at(-1)).toMatchObject({ entity: "admin_command", entityId: command });
  });
});
