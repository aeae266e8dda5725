import { randomBytes } from "node:crypto";
import type { Clock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { createSecretBox } from "../../src/lib/secret-box.ts";
import type { ConnectionOptions } from "../../src/network/connection.ts";
import { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { RouterPool } from "../../src/network/pool.ts";
import { addRouter } from "../../src/network/routers.ts";
import { ProvisioningWorker, type WorkerOptions } from "../../src/network/worker.ts";

export const box = createSecretBox(randomBytes(32));

let seq = 0;
/** An emulated router, started and registered in the database. */
export async function emulatedRouter(db: Db, name = `r${++seq}-${randomBytes(3).toString("hex")}`) {
  const emulator = await new RouterOsEmulator({
    identity: name,
    username: "tandao",
    password: "pw-" + name,
  }).start();
  const { id } = await addRouter(db, box, {
    name,
    host: "127.0.0.1",
    port: emulator.port,
    username: "tandao",
    password: "pw-" + name,
  });
  return { emulator, routerId: id };
}

/**
 * The router pool, with a moment for the test to act in: after a delivery (or anything else) was
 * handed a router's connection and before it sends a command on it.
 */
export class WatchedPool extends RouterPool {
  handingOut: ((routerId: number) => Promise<void> | void) | null = null;
  override async get(routerId: number) {
    const connection = await super.get(routerId);
    await this.handingOut?.(routerId);
    return connection;
  }
}

export function networkStack(
  db: Db,
  clock: Clock,
  options: { worker?: Partial<WorkerOptions>; connection?: Partial<ConnectionOptions> } = {},
) {
  const pool = new WatchedPool({ db, box, clock }, options.connection, 0);
  const worker = new ProvisioningWorker(
    { db, clock, pool },
    { backoffBaseMs: 50, backoffMaxMs: 500, ...options.worker },
  );
  return {
    pool,
    worker,
    close: async () => {
      await worker.stop();
      await pool.close();
    },
  };
}

export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 20_000, stepMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
