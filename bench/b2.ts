import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { RouterOSAPI } from "node-routeros";
import { systemClock } from "../src/clock.ts";
import { plans } from "../src/db/schema/index.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { RouterOsEmulator } from "../src/network/emulator/server.ts";
import { RouterPool } from "../src/network/pool.ts";
import { reconcileRouter } from "../src/network/reconcile.ts";
import { addRouter } from "../src/network/routers.ts";
import { createBenchDatabase, round } from "./support.ts";

const SECRETS = 10_000;
const BASELINE_SECRETS = 1_000;

/**
 * B2: reconcile 10,000 PPPoE secrets into an empty emulated router over one pipelined connection,
 * against a login-per-operation baseline (connect, log in, one add, close) on a 1,000 subset.
 */
export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl);
  const box = createSecretBox(randomBytes(32));
  const emulator = await new RouterOsEmulator({ username: "bench", password: "bench" }).start();
  const baselineRouter = await new RouterOsEmulator({ username: "bench", password: "bench" }).start();
  const pool = new RouterPool({ db: database.db, box, clock: systemClock });
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
    const { id: routerId } = await addRouter(db, box, {
      name: "bench",
      host: "127.0.0.1",
      port: emulator.port,
      username: "bench",
      password: "bench",
    });
    const now = new Date();
    const later = new Date(now.getTime() + 30 * 86_400_000);
    await db.execute(sql`
      with c as (
        insert into customers (account_number, phone, name)
        select 'B' || g, '+2547' || lpad(g::text, 8, '0'), 'Subscriber ' || g from generate_series(1, ${SECRETS}) g
        returning id
      )
      insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password, status,
        current_period_start, current_period_end, billing_anchor)
      select id, ${plan!.id}, ${routerId}, 'user' || id, 'pw' || md5(id::text), 'active',
        ${now.toISOString()}::timestamptz, ${later.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
      from c`);

    const started = performance.now();
    const report = await reconcileRouter({ db, clock: systemClock, pool }, routerId);
    const seconds = (performance.now() - started) / 1000;
    if (!report.ok) throw new Error(`reconcile failed: ${report.error}`);
    const created = emulator.items("/ppp/secret").filter((s) => s.comment?.startsWith("tandao:sub:")).length;
    if (created !== SECRETS) throw new Error(`expected ${SECRETS} secrets, found ${created}`);

    // Baseline: what a script that logs in for every change does.
    const baselineStarted = performance.now();
    await new Promise<void>((resolve, reject) => {
      const api = new RouterOSAPI({
        host: "127.0.0.1",
        port: baselineRouter.port,
        user: "bench",
        password: "bench",
      });
      api
        .connect()
        .then(() => api.write("/ppp/profile/add", ["=name=tandao-home10", "=rate-limit=5M/10M"]))
        .then(() => api.close())
        .then(() => resolve(), reject);
    });
    for (let i = 1; i <= BASELINE_SECRETS; i++) {
      const api = new RouterOSAPI({
        host: "127.0.0.1",
        port: baselineRouter.port,
        user: "bench",
        password: "bench",
      });
      await api.connect();
      await api.write("/ppp/secret/add", [
        `=name=user${i}`,
        `=password=pw${i}`,
        "=service=pppoe",
        "=profile=tandao-home10",
        `=comment=tandao:sub:${i}`,
        "=disabled=no",
      ]);
      await api.close();
    }
    const baselineSeconds = (performance.now() - baselineStarted) / 1000;
    const ratio = SECRETS / seconds / (BASELINE_SECRETS / baselineSeconds);
    return {
      seconds: round(seconds),
      baseline_seconds: round(baselineSeconds),
      ratio: round(ratio, 1),
      secrets: SECRETS,
      baseline_secrets: BASELINE_SECRETS,
      commands: emulator.received.length,
    };
  } finally {
    await pool.close();
    await emulator.stop();
    await baselineRouter.stop();
    await database.close();
  }
}
