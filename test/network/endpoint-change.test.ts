import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { routers } from "../../src/db/schema/index.ts";
import { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { editRouterAudited } from "../../src/network/router-edit.ts";
import { admin } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * An admin changes a router's address through the admin chat, which one instance serves: every
 * instance must reach the router where it is now, not only the one that handled the command.
 */

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("a router moved to another address", () => {
  it("is reached at the new address by an instance that did not handle the change", async () => {
    const old = await emulatedRouter(database.db, "moved-router");
    const handled = networkStack(database.db, systemClock);
    const other = networkStack(database.db, systemClock);
    const moved = await new RouterOsEmulator({
      identity: "moved-router",
      username: "tandao",
      password: "pw-moved-router",
    }).start();
    try {
      await (await handled.pool.get(old.routerId)).run("/system/identity/print");
      await (await other.pool.get(old.routerId)).run("/system/identity/print");
      // The router moves (here: to another port) and the old address goes dead.
      await old.emulator.stop();
      const [router] = await database.db.select().from(routers).where(eq(routers.id, old.routerId));
      await database.db.transaction((tx) =>
        editRouterAudited(tx, admin, new Date(), router!, { port: moved.port }),
      );
      // The admin chat's instance forgets its connection (main.ts: routerChanged); the other is not told.
      await handled.pool.invalidate(old.routerId);
      const identity = async (stack: typeof handled) =>
        (await (await stack.pool.get(old.routerId)).run("/system/identity/print"))[0]?.name;
      expect(await identity(handled)).toBe("moved-router");
      expect(await identity(other)).toBe("moved-router");
      expect(moved.count("/system/identity/print")).toBe(2);
    } finally {
      await handled.close();
      await other.close();
      await moved.stop();
    }
  });
});
