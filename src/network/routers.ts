import { and, asc, eq, sql } from "drizzle-orm";
import type { Db, Executor } from "../db/client.ts";
import { provisioningOutbox, routers } from "../db/schema/index.ts";
import type { SecretBox } from "../lib/secret-box.ts";
import { type ConnectionOptions, RouterConnection, type RouterEndpoint } from "./connection.ts";

/** The routers Tandao provisions. Passwords are sealed at rest and only opened to connect. */

export interface NewRouter {
  name: string;
  host: string;
  /** 8728 for the API, 8729 for API-SSL (the default follows `tls`). */
  port?: number;
  tls?: boolean;
  username: string;
  password: string;
}

export interface RouterHealth {
  id: number;
  name: string;
  host: string;
  port: number;
  tls: boolean;
  username: string;
  lastContactAt: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  /** Provisioning commands waiting for this router. */
  queueDepth: number;
}

export async function addRouter(
  db: Executor,
  box: SecretBox,
  input: NewRouter,
): Promise<{ id: number; name: string }> {
  const tls = input.tls ?? false;
  const [row] = await db
    .insert(routers)
    .values({
      name: input.name.trim(),
      host: input.host.trim(),
      port: input.port ?? (tls ? 8729 : 8728),
      tls,
      username: input.username,
      passwordEncrypted: box.seal(input.password),
    })
    .returning({ id: routers.id, name: routers.name });
  return row!;
}

export async function findRouterByName(db: Executor, name: string): Promise<{ id: number } | null> {
  const rows = await db.select({ id: routers.id }).from(routers).where(eq(routers.name, name));
  return rows[0] ?? null;
}

export async function listRouters(db: Executor): Promise<RouterHealth[]> {
  const depth = db
    .select({ routerId: provisioningOutbox.routerId, n: sql<number>`count(*)`.mapWith(Number).as("n") })
    .from(provisioningOutbox)
    .where(eq(provisioningOutbox.status, "pending"))
    .groupBy(provisioningOutbox.routerId)
    .as("depth");
  const rows = await db
    .select({
      id: routers.id,
      name: routers.name,
      host: routers.host,
      port: routers.port,
      tls: routers.tls,
      username: routers.username,
      lastContactAt: routers.lastContactAt,
      lastError: routers.lastError,
      lastErrorAt: routers.lastErrorAt,
      queueDepth: depth.n,
    })
    .from(routers)
    .leftJoin(depth, eq(depth.routerId, routers.id))
    .orderBy(asc(routers.id));
  return rows.map((r) => ({ ...r, queueDepth: Number(r.queueDepth ?? 0) }));
}

export async function routerEndpoint(
  db: Executor,
  box: SecretBox,
  routerId: number,
): Promise<RouterEndpoint | null> {
  const rows = await db.select().from(routers).where(eq(routers.id, routerId));
  const row = rows[0];
  if (!row) return null;
  return {
    host: row.host,
    port: row.port,
    tls: row.tls,
    username: row.username,
    password: box.open(row.passwordEncrypted),
  };
}

export async function recordContact(db: Executor, routerId: number, at: Date): Promise<void> {
  await db.update(routers).set({ lastContactAt: at }).where(eq(routers.id, routerId));
}

export async function recordRouterError(
  db: Executor,
  routerId: number,
  at: Date,
  message: string,
): Promise<void> {
  await db
    .update(routers)
    .set({ lastError: message.slice(0, 500), lastErrorAt: at })
    .where(and(eq(routers.id, routerId)));
}

export interface RouterTestResult {
  ok: boolean;
  identity?: string;
  version?: string;
  boardName?: string;
  uptime?: string;
  error?: string;
}

/** Connects and logs in with the stored credentials, reads identity and resources, records the outcome. */
export async function testRouter(
  db: Db,
  box: SecretBox,
  routerId: number,
  now: () => Date,
  options: Partial<ConnectionOptions> = {},
): Promise<RouterTestResult> {
  const endpoint = await routerEndpoint(db, box, routerId);
  if (!endpoint) return { ok: false, error: `no router ${routerId}` };
  const connection = new RouterConnection(endpoint, {
    connectTimeoutMs: 5_000,
    commandTimeoutMs: 5_000,
    ...options,
  });
  try {
    const [identity] = await connection.run("/system/identity/print");
    const [resource] = await connection.run("/system/resource/print");
    await recordContact(db, routerId, now());
    return {
      ok: true,
      identity: identity?.name,
      version: resource?.version,
      boardName: resource?.["board-name"],
      uptime: resource?.uptime,
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await recordRouterError(db, routerId, now(), message);
    return { ok: false, error: message };
  } finally {
    await connection.close();
  }
}
