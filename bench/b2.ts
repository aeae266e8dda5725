import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { RouterOSAPI } from "node-routeros";
import { systemClock } from "../src/clock.ts";
import type { Db } from "../src/db/client.ts";
import { plans } from "../src/db/schema/index.ts";
import { createSecretBox, type SecretBox } from "../src/lib/secret-box.ts";
import { RouterOsEmulator } from "../src/network/emulator/server.ts";
import { RouterPool } from "../src/network/pool.ts";
import { reconcileRouter } from "../src/network/reconcile.ts";
import { addRouter } from "../src/network/routers.ts";
import { createBenchDatabase, round } from "./support.ts";

const SECRETS = 10_000;
const BASELINE_SECRETS = 1_000;
/**
 * Reply latency of the emulated router: a router a couple of milliseconds away on the ISP's network
 * (the same for both ways of working). The figures on bare loopback are reported alongside.
 */
const LATENCY_MS = 2;

/**
 * B2: reconcile 10,000 PPPoE secrets into an empty emulated router over one pipelined connection,
 * against a login-per-operation baseline (connect, log in, one add, close) on a 1,000 subset.
 */
export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl);
  const box = createSecretBox(randomBytes(32));
  try {
    const db = database.db;
    const [plan] = await db
      .insert(plans)
      .values({
        code: "home10",
        name: "Home 10",
        kind: "pppoe",
        priceCents: 250_000,
        periodUnit: "months",
        rateLimit: "5M/10M",
      })
      .returning();
    const now = new Date();
    const later = new Date(now.getTime() + 30 * 86_400_000);
    await db.execute(sql`
      insert into customers (account_number, phone, name)
      select 'B' || g, '+2547' || lpad(g::text, 8, '0'), 'Subscriber ' || g from generate_series(1, ${SECRETS}) g`);
    const subscriptionsFor = async (routerId: number) => {
      await db.execute(sql`delete from subscriptions`);
      await db.execute(sql`
        insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password, status,
          current_period_start, current_period_end, billing_anchor)
        select id, ${plan!.id}, ${routerId}, 'user' || id, 'pw' || md5(id::text), 'active',
          ${now.toISOString()}::timestamptz, ${later.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
        from customers`);
    };
    const remote = await measure(db, box, LATENCY_MS, subscriptionsFor);
    const loopback = await measure(db, box, 0, subscriptionsFor);
    return {
      seconds: remote.seconds,
      baseline_seconds: remote.baselineSeconds,
      ratio: remote.ratio,
      latency_ms: LATENCY_MS,
      loopback_seconds: loopback.seconds,
      loopback_baseline_seconds: loopback.baselineSeconds,
      loopback_ratio: loopback.ratio,
      secrets: SECRETS,
      baseline_secrets: BASELINE_SECRETS,
    };
  } finally {
    await database.close();
  }
}

async function measure(
  db: Db,
  box: SecretBox,
  latencyMs: number,
  subscriptionsFor: (routerId: number) => Promise<void>,
): Promise<{ seconds: number; baselineSeconds: number; ratio: number }> {
  const emulator = await new RouterOsEmulator({ username: "bench", password: "bench" }).start();
  const baselineRouter = await new RouterOsEmulator({ username: "bench", password: "bench" }).start();
  emulator.latencyMs = latencyMs;
  baselineRouter.latencyMs = latencyMs;
  const pool = new RouterPool({ db, box, clock: systemClock });
  try {
    const { id: routerId } = await addRouter(db, box, {
      name: `bench-${latencyMs}ms`,
      host: "127.0.0.1",
      port: emulator.port,
      username: "bench",
      password: "bench",
    });
    await subscriptionsFor(routerId);

    const started = performance.now();
    const report = await reconcileRouter({ db, clock: systemClock, pool }, routerId);
    const seconds = (performance.now() - started) / 1000;
    if (!report.ok) throw new Error(`reconcile failed: ${report.error}`);
    const created = emulator.items("/ppp/secret").filter((s) => s.comment?.startsWith("tandao:sub:")).length;
    if (created !== SECRETS) throw new Error(`expected ${SECRETS} secrets, found ${created}`);

    // Baseline: what a script that logs in for every change does.
    const once = async (command: string, params: string[]) => {
      const api = new RouterOSAPI({
        host: "127.0.0.1",
        port: baselineRouter.port,
        user: "bench",
        password: "bench",
      });
      await api.connect();
      await api.write(command, params);
      await api.close();
    };
    const baselineStarted = performance.now();
    await once("/ppp/profile/add", ["=name=tandao-home10", "=rate-limit=5M/10M"]);
    for (let i = 1; i <= BASELINE_SECRETS; i++) {
      await once("/ppp/secret/add", [
        `=name=user${i}`,
        `=password=pw${i}`,
        "=service=pppoe",
        "=profile=tandao-home10",
        `=comment=tandao:sub:${i}`,
        "=disabled=no",
      ]);
    }
    const baselineSeconds = (performance.now() - baselineStarted) / 1000;
    const ratio = SECRETS / seconds / (BASELINE_SECRETS / baselineSeconds);
    return { seconds: round(seconds), baselineSeconds: round(baselineSeconds), ratio: round(ratio, 1) };
  } finally {
    await pool.close();
    await emulator.stop();
    await baselineRouter.stop();
  }
}
