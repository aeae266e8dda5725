import { Cron } from "croner";
import { eq } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { Db } from "../db/client.ts";
import { routers } from "../db/schema/index.ts";
import type { SecretBox } from "../lib/secret-box.ts";
import type { Logger } from "../logger.ts";
import type { ConnectionOptions } from "./connection.ts";
import { RouterOsEmulator } from "./emulator/server.ts";
import { RouterPool } from "./pool.ts";
import {
  type ReconcileRun,
  type RouterReconcileReport,
  reconcileAll,
  reconcileJobName,
  reconcileRouter,
} from "./reconcile.ts";
import {
  addRouter,
  type ConfirmCertificateResult,
  confirmRouterCertificate,
  findRouterByName,
  listRouters,
  type RouterHealth,
  type RouterTestResult,
  testRouter,
} from "./routers.ts";
import { ProvisioningWorker, type WorkerOptions } from "./worker.ts";

export interface NetworkDeps {
  db: Db;
  clock: Clock;
  logger: Logger;
  box: SecretBox;
  config: Pick<
    Config,
    | "ADMIN_PHONE"
    | "RECONCILE_CRON"
    | "PROVISIONING_MAX_ATTEMPTS"
    | "ROUTER_COMMAND_TIMEOUT_MS"
    | "ROUTER_PROBE_SECONDS"
    | "SCHEDULER"
  > &
    Partial<Pick<Config, "PORTAL_URL" | "PUBLIC_URL">>;
  /** Overrides for tests and benchmarks. */
  worker?: Partial<WorkerOptions>;
  connection?: Partial<ConnectionOptions>;
}

export interface Network {
  pool: RouterPool;
  worker: ProvisioningWorker;
  /** Deliver pending provisioning now (call after a payment or any change that must reach a router). */
  kick(): void;
  /**
   * All routers (or one) compared with the database and repaired; `dryRun` only reports. All
   * routers is a job run (`status: "skipped"` while another instance runs it).
   */
  reconcile(options?: { dryRun?: boolean }): Promise<ReconcileRun>;
  reconcileRouter(routerId: number, options?: { dryRun?: boolean }): Promise<RouterReconcileReport>;
  listRouters(): Promise<RouterHealth[]>;
  testRouter(routerId: number): Promise<RouterTestResult>;
  /** Pins the API-SSL certificate a router presented, once an admin has checked its fingerprint. */
  confirmRouterCertificate(routerId: number, fingerprint: string): Promise<ConfirmCertificateResult>;
  stop(): Promise<void>;
}

/** The provisioning worker, its connections and the reconciliation schedule. */
export function startNetwork(deps: NetworkDeps): Network {
  const pool = new RouterPool(
    { db: deps.db, box: deps.box, clock: deps.clock, logger: deps.logger },
    {
      commandTimeoutMs: deps.config.ROUTER_COMMAND_TIMEOUT_MS,
      ...deps.connection,
    },
  );
  const worker = new ProvisioningWorker(
    { db: deps.db, clock: deps.clock, pool, logger: deps.logger },
    {
      maxAttempts: deps.config.PROVISIONING_MAX_ATTEMPTS,
      adminPhone: deps.config.ADMIN_PHONE,
      probeMs: deps.config.ROUTER_PROBE_SECONDS * 1000,
      ...deps.worker,
    },
  );
  worker.start();
  const reconcileDeps = {
    db: deps.db,
    clock: deps.clock,
    pool,
    logger: deps.logger,
    ...(deps.config.PORTAL_URL || deps.config.PUBLIC_URL
      ? { portalUrl: deps.config.PORTAL_URL ?? deps.config.PUBLIC_URL }
      : {}),
  };
  // Only instances that run the scheduled jobs reconcile on a timer; the job runner keeps it to one.
  const schedule = deps.config.SCHEDULER
    ? new Cron(deps.config.RECONCILE_CRON, { protect: true, name: reconcileJobName }, async () => {
        try {
          const run = await reconcileAll(reconcileDeps);
          if (run.status === "failed")
            deps.logger.error({ error: run.error }, "scheduled reconciliation failed");
        } catch (error) {
          deps.logger.error({ err: error }, "scheduled reconciliation failed");
        }
      })
    : null;
  return {
    pool,
    worker,
    kick: () => worker.kick(),
    reconcile: (options) => reconcileAll(reconcileDeps, options),
    reconcileRouter: (routerId, options) => reconcileRouter(reconcileDeps, routerId, options),
    listRouters: () => listRouters(deps.db),
    testRouter: (routerId) => testRouter(deps.db, deps.box, routerId, () => deps.clock.now()),
    confirmRouterCertificate: (routerId, fingerprint) =>
      confirmRouterCertificate(deps.db, routerId, fingerprint),
    stop: async () => {
      schedule?.stop();
      await worker.stop();
      await pool.close();
    },
  };
}

/**
 * Sandbox mode with no real router: an emulated one on 127.0.0.1, registered as `sandbox`, so that
 * provisioning can be watched end to end. Its port changes at each start; the row follows it.
 */
export async function startSandboxRouter(
  db: Db,
  box: SecretBox,
  logger: Logger,
): Promise<RouterOsEmulator | null> {
  const all = await db.select({ id: routers.id, name: routers.name }).from(routers);
  if (all.some((r) => r.name !== "sandbox")) return null;
  const emulator = await new RouterOsEmulator({
    identity: "sandbox",
    username: "tandao",
    password: "sandbox",
  }).start();
  const existing = await findRouterByName(db, "sandbox");
  if (existing) {
    await db
      .update(routers)
      .set({
        host: "127.0.0.1",
        port: emulator.port,
        tls: false,
        username: "tandao",
        passwordEncrypted: box.seal("sandbox"),
      })
      .where(eq(routers.id, existing.id));
  } else {
    await addRouter(db, box, {
      name: "sandbox",
      host: "127.0.0.1",
      port: emulator.port,
      username: "tandao",
      password: "sandbox",
    });
  }
  logger.info(
    { port: emulator.port },
    `sandbox router (RouterOS API emulator) on 127.0.0.1:${emulator.port}`,
  );
  return emulator;
}

export { RouterOsEmulator } from "./emulator/server.ts";
export { RouterPool } from "./pool.ts";
export { reconcileAll, reconcileRouter } from "./reconcile.ts";
export { addRouter, confirmRouterCertificate, listRouters, testRouter } from "./routers.ts";
export { ProvisioningWorker } from "./worker.ts";
