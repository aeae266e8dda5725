import { asc, desc, eq, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { parseRowId } from "../db/params.ts";
import { provisioningOutbox, routers } from "../db/schema/index.ts";

/**
 * Read-only: how each router is doing, for people (the admin chat's `/routers`, its alerts). No
 * router is asked anything: this is what the worker, the prober and the reconciliation recorded.
 */

/**
 * `down`: its last recorded error is newer than its last contact (the prober's own test);
 * `unknown`: never contacted and no error yet; `up` otherwise.
 */
export type RouterState = "up" | "down" | "unknown";

export function routerState(r: { lastContactAt: Date | null; lastErrorAt: Date | null }): RouterState {
  if (r.lastErrorAt && (!r.lastContactAt || r.lastErrorAt >= r.lastContactAt)) return "down";
  if (!r.lastContactAt) return "unknown";
  return "up";
}

export interface RouterStatus {
  id: number;
  name: string;
  host: string;
  port: number;
  tls: boolean;
  state: RouterState;
  lastContactAt: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  /** A certificate presented that an admin has not confirmed (the router is refused until then). */
  certificateToConfirm: boolean;
  /** Provisioning rows waiting (pending) for this router. */
  pending: number;
  /** Provisioning rows given up (dead) for this router. */
  dead: number;
}

export async function routerStatuses(db: Executor): Promise<RouterStatus[]> {
  const queue = db
    .select({
      routerId: provisioningOutbox.routerId,
      pending: sql<number>`count(*) filter (where ${provisioningOutbox.status} = 'pending')`
        .mapWith(Number)
        .as("pending"),
      dead: sql<number>`count(*) filter (where ${provisioningOutbox.status} = 'dead')`
        .mapWith(Number)
        .as("dead"),
    })
    .from(provisioningOutbox)
    .where(sql`${provisioningOutbox.status} in ('pending', 'dead')`)
    .groupBy(provisioningOutbox.routerId)
    .as("queue");
  const rows = await db
    .select({
      id: routers.id,
      name: routers.name,
      host: routers.host,
      port: routers.port,
      tls: routers.tls,
      lastContactAt: routers.lastContactAt,
      lastError: routers.lastError,
      lastErrorAt: routers.lastErrorAt,
      tlsFingerprintSeen: routers.tlsFingerprintSeen,
      tlsFingerprint: routers.tlsFingerprint,
      pending: queue.pending,
      dead: queue.dead,
    })
    .from(routers)
    .leftJoin(queue, eq(queue.routerId, routers.id))
    .orderBy(asc(routers.name), asc(routers.id));
  return rows.map(({ tlsFingerprintSeen, tlsFingerprint, ...r }) => ({
    ...r,
    state: routerState(r),
    certificateToConfirm: tlsFingerprintSeen !== null && tlsFingerprintSeen !== tlsFingerprint,
    pending: Number(r.pending ?? 0),
    dead: Number(r.dead ?? 0),
  }));
}

/** Rows meant for any router (a voucher for every hotspot): pending and dead. */
export async function anyRouterQueue(db: Executor): Promise<{ pending: number; dead: number }> {
  const [row] = await db
    .select({
      pending: sql<number>`count(*) filter (where ${provisioningOutbox.status} = 'pending')`.mapWith(Number),
      dead: sql<number>`count(*) filter (where ${provisioningOutbox.status} = 'dead')`.mapWith(Number),
    })
    .from(provisioningOutbox)
    .where(
      sql`${provisioningOutbox.routerId} is null and ${provisioningOutbox.status} in ('pending', 'dead')`,
    );
  return { pending: Number(row?.pending ?? 0), dead: Number(row?.dead ?? 0) };
}

/** A router by its name (any case) or its id as typed. */
export async function findRouterByReference(db: Executor, reference: string) {
  const ref = reference.trim();
  const byName = await db
    .select({ id: routers.id, name: routers.name })
    .from(routers)
    .where(sql`lower(${routers.name}) = ${ref.toLowerCase()}`)
    .limit(1);
  if (byName[0]) return byName[0];
  const id = parseRowId(ref);
  if (id === null) return null;
  const [byId] = await db
    .select({ id: routers.id, name: routers.name })
    .from(routers)
    .where(eq(routers.id, id));
  return byId ?? null;
}

/** Provisioning rows given up, newest first (by when they were given up). */
export async function deadProvisioning(db: Executor, limit: number) {
  return db
    .select({
      id: provisioningOutbox.id,
      action: provisioningOutbox.action,
      routerId: provisioningOutbox.routerId,
      routerName: routers.name,
      subscriptionId: provisioningOutbox.subscriptionId,
      voucherId: provisioningOutbox.voucherId,
      attempts: provisioningOutbox.attempts,
      lastError: provisioningOutbox.lastError,
      doneAt: provisioningOutbox.doneAt,
      createdAt: provisioningOutbox.createdAt,
    })
    .from(provisioningOutbox)
    .leftJoin(routers, eq(routers.id, provisioningOutbox.routerId))
    .where(eq(provisioningOutbox.status, "dead"))
    .orderBy(sql`${provisioningOutbox.doneAt} desc nulls last`, desc(provisioningOutbox.id))
    .limit(limit);
}
