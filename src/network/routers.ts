import { and, asc, eq, sql } from "drizzle-orm";
import { audit } from "../billing/audit.ts";
import type { Actor } from "../billing/context.ts";
import type { Db, Executor } from "../db/client.ts";
import { provisioningOutbox, routers } from "../db/schema/index.ts";
import type { SecretBox } from "../lib/secret-box.ts";
import {
  type CertificatePins,
  type ConnectionOptions,
  RouterConnection,
  type RouterEndpoint,
} from "./connection.ts";
import { normalizeFingerprint } from "./tls-pin.ts";

/** The routers Tandao provisions. Passwords are sealed at rest and only opened to connect. */

export interface NewRouter {
  name: string;
  host: string;
  /** 8728 for the API, 8729 for API-SSL (the default follows `tls`). */
  port?: number;
  tls?: boolean;
  username: string;
  password: string;
  /**
   * The SHA-256 fingerprint of the router's API-SSL certificate, when the admin has it at hand
   * (RouterOS: `/certificate print detail`). Without it, the first connection is refused and the
   * certificate presented waits in `tls_fingerprint_seen` for `confirmRouterCertificate`.
   */
  tlsFingerprint?: string;
}

export interface RouterHealth {
  id: number;
  name: string;
  host: string;
  port: number;
  tls: boolean;
  username: string;
  /** The pinned API-SSL certificate, and one presented since that an admin has not confirmed. */
  tlsFingerprint: string | null;
  tlsFingerprintSeen: string | null;
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
  const fingerprint = input.tlsFingerprint === undefined ? null : normalizeFingerprint(input.tlsFingerprint);
  if (input.tlsFingerprint !== undefined && fingerprint === null) {
    throw new Error("tlsFingerprint must be a SHA-256 fingerprint (64 hex digits, colons optional)");
  }
  const [row] = await db
    .insert(routers)
    .values({
      name: input.name.trim(),
      host: input.host.trim(),
      port: input.port ?? (tls ? 8729 : 8728),
      tls,
      username: input.username,
      passwordEncrypted: box.seal(input.password),
      tlsFingerprint: fingerprint,
    })
    .returning({ id: routers.id, name: routers.name });
  return row!;
}

/**
 * An admin adds a router (chat or terminal): the row, its password sealed, and the audit entry (the
 * password never in it), in the caller's transaction.
 */
export async function addRouterAudited(
  tx: Executor,
  box: SecretBox,
  actor: Actor,
  now: Date,
  input: NewRouter,
): Promise<{ id: number; name: string }> {
  const added = await addRouter(tx, box, input);
  const tls = input.tls ?? false;
  await audit(tx, actor, now, {
    action: "router.added",
    entity: "router",
    entityId: added.id,
    details: {
      name: added.name,
      host: input.host,
      port: input.port ?? (tls ? 8729 : 8728),
      user: input.username,
      tls,
    },
  });
  return added;
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
      tlsFingerprint: routers.tlsFingerprint,
      tlsFingerprintSeen: routers.tlsFingerprintSeen,
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
    name: row.name,
    host: row.host,
    port: row.port,
    tls: row.tls,
    username: row.username,
    password: box.open(row.passwordEncrypted),
    pins: certificatePins(db, routerId),
    reload: () => routerEndpoint(db, box, routerId),
  };
}

/**
 * A router's pinned API-SSL certificate, read at each connection (not when the connection object
 * is made), so that a certificate an admin confirms counts from the next attempt on, in every instance.
 */
export function certificatePins(db: Executor, routerId: number): CertificatePins {
  return {
    async pinned() {
      const [row] = await db
        .select({ fingerprint: routers.tlsFingerprint })
        .from(routers)
        .where(eq(routers.id, routerId));
      return row?.fingerprint ? normalizeFingerprint(row.fingerprint) : null;
    },
    async refused(fingerprint) {
      await db.update(routers).set({ tlsFingerprintSeen: fingerprint }).where(eq(routers.id, routerId));
    },
  };
}

export type ConfirmCertificateResult = { ok: true; fingerprint: string } | { ok: false; reason: string };

/**
 * An admin confirms the API-SSL certificate a router presented (its fingerprint as they checked it
 * on the router, e.g. `/certificate print detail`): it is pinned only when it is the one the router
 * presented (`tls_fingerprint_seen`), in one statement, so that a certificate presented meanwhile is
 * never pinned unseen. Connections use it from their next attempt.
 */
export async function confirmRouterCertificate(
  db: Executor,
  routerId: number,
  fingerprint: string,
): Promise<ConfirmCertificateResult> {
  const wanted = normalizeFingerprint(fingerprint);
  if (!wanted) return { ok: false, reason: "not a SHA-256 fingerprint (64 hex digits, colons optional)" };
  const pinned = await db
    .update(routers)
    .set({ tlsFingerprint: wanted, tlsFingerprintSeen: null })
    .where(and(eq(routers.id, routerId), eq(routers.tlsFingerprintSeen, wanted)))
    .returning({ id: routers.id });
  if (pinned.length > 0) return { ok: true, fingerprint: wanted };
  const [row] = await db
    .select({ seen: routers.tlsFingerprintSeen })
    .from(routers)
    .where(eq(routers.id, routerId));
  if (!row) return { ok: false, reason: `no router ${routerId}` };
  if (!row.seen) {
    return {
      ok: false,
      reason: "the router has presented no certificate to confirm: test its connection first",
    };
  }
  return { ok: false, reason: `the router presented another certificate (SHA-256 ${row.seen})` };
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
