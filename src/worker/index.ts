import { Hono } from "hono";
import { billingJobs } from "../billing/jobs.ts";
import { systemClock } from "../clock.ts";
import { billingSettingsFrom, type Config, loadConfig } from "../config.ts";
import { useSealingKey } from "../db/sealed.ts";
import { runJob } from "../jobs/runner.ts";
import { slotOf } from "../jobs/scheduler.ts";
import { createSecretBox, parseSecretKey } from "../lib/secret-box.ts";
import { openWorkerDatabase, type WorkerDatabase } from "./db.ts";
import { createWorkerLogger } from "./logger.ts";
import { type WorkerRequest, workerRoutes } from "./routes.ts";
import type { ExecutionContext, ScheduledController, WorkerEnv } from "./types.ts";

/**
 * The Cloudflare Worker: Tandao's webhooks (Africa's Talking USSD, Daraja's M-Pesa callbacks, the
 * Telegram and WhatsApp Cloud API bots, the captive portal) and the billing jobs on Cron Triggers,
 * on PostgreSQL through Hyperdrive. Everything that needs a long-lived process or raw TCP to
 * routers (provisioning, SMS and chat delivery, the M-Pesa push dispatcher, WhatsApp Web, the admin
 * bot) runs in the Node service on the same database: see docs/worker.md.
 */

/** The settings, parsed by the same code as the Node service's (src/config.ts), from vars and secrets. */
function settingsOf(env: WorkerEnv): Config {
  const strings: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (typeof value === "string") strings[key] = value;
  return loadConfig(strings);
}

interface Request extends WorkerRequest {
  database: WorkerDatabase;
}

/** The SECRET_KEY the sealed columns (PPPoE passwords) are opened with in this isolate. */
let sealingKey: string | undefined;

function open(env: WorkerEnv): Request {
  const config = settingsOf(env);
  // The Node service's key, never one of the Worker's own: both read and write the same rows.
  if (!config.SECRET_KEY)
    throw new Error("SECRET_KEY is required in the Worker (the Node service's, as a secret)");
  const secretKey = parseSecretKey(config.SECRET_KEY);
  if (config.SECRET_KEY !== sealingKey) {
    useSealingKey(createSecretBox(secretKey));
    sealingKey = config.SECRET_KEY;
  }
  const logger = createWorkerLogger(config.LOG_LEVEL, { runtime: "worker" });
  const database = openWorkerDatabase(env.HYPERDRIVE.connectionString);
  const billing = { db: database.db, clock: systemClock, settings: billingSettingsFrom(config) };
  return { config, logger, database, billing, secretKey };
}

const app = new Hono<{ Bindings: WorkerEnv }>();
app.all("*", async (c) => {
  let request: Request;
  try {
    request = open(c.env);
  } catch (error) {
    // A configuration the Node service would refuse to start with: named problems only, no values.
    console.error(JSON.stringify({ level: 60, msg: "Tandao Worker misconfigured", error: String(error) }));
    return c.json({ error: "misconfigured" }, 500);
  }
  const { database, logger } = request;
  let settled = () => Promise.resolve();
  try {
    const routes = workerRoutes(request, new URL(c.req.url).pathname);
    settled = routes.settled;
    return await routes.app.fetch(c.req.raw);
  } finally {
    // The answer is not held up: work left after it (WhatsApp messages) finishes, then the
    // connections go back to Hyperdrive's pool.
    c.executionCtx.waitUntil(
      settled()
        .catch((error: unknown) => logger.error({ err: error }, "work after the answer failed"))
        .finally(() => database.close()),
    );
  }
});

/**
 * Cron Triggers: each trigger runs the billing jobs whose schedule is exactly its pattern
 * (wrangler.toml lists every `billingJobs` schedule), through the same runner as the Node
 * scheduler, with the same minute slot: a job already run for that slot by any instance, the
 * Node service's scheduler included, is skipped, so both may run the billing jobs.
 */
export async function scheduled(
  event: ScheduledController,
  env: WorkerEnv,
  _ctx: ExecutionContext,
): Promise<void> {
  const request = open(env);
  const { logger, billing, database } = request;
  const slot = slotOf(new Date(event.scheduledTime));
  const due = billingJobs.filter((job) => job.schedule === event.cron);
  if (due.length === 0) logger.warn({ cron: event.cron }, "no billing job has this schedule");
  try {
    for (const job of due) {
      const result = await runJob(billing.db, billing.clock, job.name, (tx) => job.run(tx, billing), slot);
      const line = { job: job.name, slot: slot.toISOString(), status: result.status, counts: result.counts };
      if (result.status === "failed") logger.error({ ...line, error: result.error }, "job failed");
      else logger.info(line, "job run");
    }
  } finally {
    await database.close();
  }
}

export default { fetch: app.fetch, scheduled };
