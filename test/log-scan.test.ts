import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { type BillingContext, defaultBillingSettings } from "../src/billing/context.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { systemClock } from "../src/clock.ts";
import { type Config, loadConfig } from "../src/config.ts";
import { customers, paymentIntents, subscriptions } from "../src/db/schema/index.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { createLogger, type Logger } from "../src/logger.ts";
import { type Messaging, startMessaging } from "../src/messaging/index.ts";
import { deliverDueSms } from "../src/messaging/sms-worker.ts";
import { ensureSecret } from "../src/network/driver.ts";
import { RouterOsEmulator } from "../src/network/emulator/server.ts";
import { RouterPool } from "../src/network/pool.ts";
import { addRouter } from "../src/network/routers.ts";
import { ProvisioningWorker } from "../src/network/worker.ts";
import { type Payments, startPayments } from "../src/payments/index.ts";
import { FakeDaraja } from "../src/payments/mpesa/fake.ts";
import { callbackPaths } from "../src/payments/routes.ts";
import { ussdRoutesFrom } from "../src/ussd/index.ts";
import { waitFor } from "./network/support.ts";
import { breakPaymentInserts, serveApp } from "./payments/inbox-support.ts";
import { admin, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

/**
 * Representative scenarios run with every secret set to a known value, all logging into one
 * captured stream at `trace`: none of the secrets, no PPPoE password and no phone number that was a
 * query parameter may appear in what was logged.
 */

const secrets = {
  MPESA_CONSUMER_KEY: "ckLogScan4e1f",
  MPESA_CONSUMER_SECRET: "csLogScan9a2b",
  MPESA_PASSKEY: "pkLogScan7c3d",
  MPESA_CALLBACK_TOKEN: "cbLogScan5d6e",
  AT_API_KEY: "atLogScan3f8a",
  USSD_TOKEN: "usLogScan2b7c",
  SECRET_KEY: "5e1f".repeat(16),
};
const shortcode = "600999";
const routerPassword = "rtLogScan8d9e";
const wrongRouterPassword = "rwLogScan1a4b";
const pppoePassword = "ppLogScan6f0c";
/** A phone and a PPPoE password that only ever travel as query parameters (scenario "database error"). */
const dbPhone = "+254798765432";
const dbPppoePassword = "pdLogScan0e3a";

const forbidden: Record<string, string> = {
  ...secrets,
  "Daraja basic credential": Buffer.from(
    `${secrets.MPESA_CONSUMER_KEY}:${secrets.MPESA_CONSUMER_SECRET}`,
  ).toString("base64"),
  "router password": routerPassword,
  "router password (wrong one tried)": wrongRouterPassword,
  "PPPoE password": pppoePassword,
  "PPPoE password (query parameter)": dbPppoePassword,
  "phone (query parameter)": dbPhone,
  "phone (query parameter, no +)": dbPhone.slice(1),
};

/** Everything logged, line by line. */
const lines: string[] = [];
const sink = new Writable({
  write(chunk, _encoding, done) {
    lines.push(...String(chunk).split("\n").filter(Boolean));
    done();
  },
});
const logger: Logger = createLogger("trace", sink);

/** Fails naming every secret that was logged and each message that carried it, with its context. */
function expectNoSecrets(from = 0, extra: Record<string, string> = {}) {
  const scanned = lines.slice(from);
  const leaks: string[] = [];
  for (const [name, value] of Object.entries({ ...forbidden, ...extra })) {
    for (const line of scanned.filter((l) => l.includes(value))) {
      const at = line.indexOf(value);
      const { msg } = JSON.parse(line) as { msg?: string };
      leaks.push(`${name} in "${msg}": …${line.slice(Math.max(0, at - 60), at + value.length + 10)}…`);
    }
  }
  expect(leaks).toEqual([]);
}

const logged = (from: number, msg: string | RegExp) =>
  lines.slice(from).some((line) => {
    const text = (JSON.parse(line) as { msg?: string }).msg ?? "";
    return typeof msg === "string" ? text === msg : msg.test(text);
  });

/** An SMS gateway that refuses every message, quoting the request it got (as some gateways do). */
async function echoingGateway(): Promise<{ url: string; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      received.push(new URLSearchParams(body).get("message") ?? "");
      res.writeHead(400, { "content-type": "text/plain" });
      res.end(`Invalid request: ${body}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/version1/messaging`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let database: TestDatabase;
let ctx: BillingContext;
let config: Config;
let daraja: FakeDaraja;
let gateway: Awaited<ReturnType<typeof echoingGateway>>;
let payments: Payments;
let messaging: Messaging;
let server: { baseUrl: string; close(): Promise<void> };
let emulator: RouterOsEmulator;
let dataDir: string;
const box = createSecretBox(Buffer.from(secrets.SECRET_KEY, "hex"));

beforeAll(async () => {
  useSealingKey(box);
  database = await createTestDatabase();
  // Daraja checks the push's timestamp against its own clock: real time.
  ctx = { db: database.db, clock: systemClock, settings: defaultBillingSettings };
  daraja = await FakeDaraja.start({
    consumerKey: secrets.MPESA_CONSUMER_KEY,
    consumerSecret: secrets.MPESA_CONSUMER_SECRET,
    passkey: secrets.MPESA_PASSKEY,
    shortcode,
    // The callback URL is the public https one: the test posts each callback itself.
    defaultDelivery: { outcome: "success", lost: true },
  });
  gateway = await echoingGateway();
  emulator = await new RouterOsEmulator({
    identity: "logscan",
    username: "tandao",
    password: routerPassword,
  }).start();
  dataDir = mkdtempSync(path.join(tmpdir(), "tandao-log-scan-"));
});

afterAll(async () => {
  await server?.close();
  await payments?.stop();
  await messaging?.stop();
  await daraja?.close();
  await gateway?.close();
  await emulator?.stop();
  await database?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

let session = 0;
async function dialPay(phone: string) {
  const response = await fetch(`${server.baseUrl}/ussd/${secrets.USSD_TOKEN}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      sessionId: `logscan-${process.pid}-${++session}`,
      serviceCode: "*384*1#",
      phoneNumber: phone,
      text: "2*1",
    }),
  });
  expect(response.status).toBe(200);
  expect(await response.text()).toMatch(/^END Enter your M-Pesa PIN/);
  const msisdn = phone.replace(/^\+/, "");
  await waitFor(() => daraja.pushes.some((p) => p.msisdn === msisdn), 10_000);
  return daraja.pushes.find((p) => p.msisdn === msisdn)!;
}

async function intentOf(phone: string) {
  const [row] = await database.db.select().from(paymentIntents).where(eq(paymentIntents.phone, phone));
  return row!;
}

describe("logs carry no secret", () => {
  it("app start in production: payments, SMS, USSD and M-Pesa routes with every secret set", async () => {
    const from = lines.length;
    config = loadConfig({
      TANDAO_MODE: "production",
      ...secrets,
      MPESA_SHORTCODE: shortcode,
      MPESA_BASE_URL: daraja.url,
      AT_USERNAME: "kiberanet",
      AT_SMS_URL: gateway.url,
      PUBLIC_URL: "https://isp.example",
      DATA_DIR: dataDir,
      LOG_LEVEL: "trace",
    });
    expect(config.mode).toBe("production");
    payments = await startPayments({ config, ctx, logger, background: false });
    messaging = await startMessaging({
      config,
      db: database.db,
      clock: ctx.clock,
      logger,
      background: false,
    });
    expect(payments.fake).toBeNull();
    const app = createApp({
      db: database.db,
      logger,
      mode: config.mode,
      ussdRoutes: ussdRoutesFrom({ config, ctx, logger, requestPayment: payments.request }),
      mpesaRoutes: payments.routes,
    });
    server = await serveApp(app);
    logger.info({ mode: config.mode, publicUrl: config.PUBLIC_URL }, "started");
    expectNoSecrets(from);
  });

  it("an M-Pesa payment: USSD prompt, push, callback, activation SMS refused by a gateway quoting it, provisioning on a router with a wrong password", async () => {
    const from = lines.length;
    const { id: routerId } = await addRouter(database.db, box, {
      name: "logscan-wrong-password",
      host: "127.0.0.1",
      port: emulator.port,
      username: "tandao",
      password: wrongRouterPassword,
    });
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Wairimu Log",
      phone: uniquePhone(),
      planId: plan.id,
      routerId,
      networkPassword: pppoePassword,
    });
    const push = await dialPay(customer.phone);
    await daraja.postCallback(
      `${server.baseUrl}${callbackPaths.stk(secrets.MPESA_CALLBACK_TOKEN)}`,
      push.body,
    );
    expect((await intentOf(customer.phone)).status).toBe("succeeded");

    // The activation SMS carries the PPPoE password; the gateway refuses every message, quoting it.
    // Messages to one number go in order: each is given up after one try so the next one is sent.
    let activationRefused = false;
    for (let pass = 0; pass < 10 && !activationRefused; pass++) {
      const counts = await deliverDueSms({
        db: database.db,
        clock: ctx.clock,
        sender: messaging.sender,
        isp: config.ISP_NAME,
        logger,
        maxAttempts: 1,
      });
      expect(counts.sent).toBe(0);
      activationRefused = gateway.received.some((body) => body.includes("PPPoE"));
    }
    expect(activationRefused).toBe(true);
    expect(logged(from, "SMS not delivered")).toBe(true);

    // Provisioning the subscriber's secret meets the router refusing our (wrong) password.
    const pool = new RouterPool(
      { db: database.db, box, clock: ctx.clock, logger },
      { connectTimeoutMs: 2_000 },
    );
    const worker = new ProvisioningWorker(
      { db: database.db, clock: ctx.clock, pool, logger },
      { maxAttempts: 1, backoffBaseMs: 10, backoffMaxMs: 50 },
    );
    try {
      await worker.drain();
    } finally {
      await worker.stop();
      await pool.close();
    }
    expect(logged(from, "router connection failed")).toBe(true);
    expectNoSecrets(from);
  });

  it("a callback whose processing fails: stored, logged, and the query's parameters (the payer's phone) are not", async () => {
    const from = lines.length;
    const plan = await createPlan(database.db, { priceCents: 120_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Kamau Log",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const push = await dialPay(customer.phone);
    const broken = await breakPaymentInserts(database.db);
    try {
      const answer = await daraja.postCallback(
        `${server.baseUrl}${callbackPaths.stk(secrets.MPESA_CALLBACK_TOKEN)}`,
        push.body,
      );
      expect(answer).toEqual({ ResultCode: 0, ResultDesc: "Accepted" });
    } finally {
      await broken.repair();
    }
    expect(await broken.tries()).toBeGreaterThanOrEqual(1);
    expect(logged(from, /processing failed/)).toBe(true);
    expectNoSecrets(from, {
      "payer's phone": customer.phone,
      "payer's phone (no +)": customer.phone.slice(1),
    });
  });

  it("M-Pesa refusing our credentials: one error naming the settings to check, not their values", async () => {
    const from = lines.length;
    const plan = await createPlan(database.db, { priceCents: 110_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Chebet Log",
      phone: uniquePhone(),
      planId: plan.id,
    });
    daraja.failNextPush(500, "500.001.1001", "Wrong credentials");
    const response = await fetch(`${server.baseUrl}/ussd/${secrets.USSD_TOKEN}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        sessionId: `logscan-${process.pid}-${++session}`,
        serviceCode: "*384*1#",
        phoneNumber: customer.phone,
        text: "2*1",
      }),
    });
    expect(response.status).toBe(200);
    await waitFor(() => logged(from, /M-Pesa refused our credentials/), 10_000);
    expect(logged(from, /MPESA_SHORTCODE, MPESA_PASSKEY/)).toBe(true);
    expectNoSecrets(from);
  });

  it("an unhandled error in a route: the app logs the route's pattern, not the path with the token", async () => {
    const from = lines.length;
    // A route that fails in a way nobody handled (a bug): only the app's error handler sees it.
    const buggy = new Hono();
    buggy.post("/:token/stk", () => {
      throw new Error("connection terminated unexpectedly");
    });
    const app = createApp({ db: database.db, logger, mpesaRoutes: buggy });
    const response = await app.request(callbackPaths.stk(secrets.MPESA_CALLBACK_TOKEN), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(response.status).toBe(500);
    const line = lines
      .slice(from)
      .map((l) => JSON.parse(l) as { msg: string; route?: string })
      .find((l) => l.msg === "unhandled error");
    expect(line?.route).toMatch(/:token/);
    expectNoSecrets(from);
  });

  it("router errors: a login refused, and a command refused while it carried a PPPoE password", async () => {
    const from = lines.length;
    const wrong = await addRouter(database.db, box, {
      name: "logscan-wrong-2",
      host: "127.0.0.1",
      port: emulator.port,
      username: "tandao",
      password: wrongRouterPassword,
    });
    const right = await addRouter(database.db, box, {
      name: "logscan-right",
      host: "127.0.0.1",
      port: emulator.port,
      username: "tandao",
      password: routerPassword,
    });
    const pool = new RouterPool(
      { db: database.db, box, clock: ctx.clock, logger },
      { connectTimeoutMs: 2_000 },
    );
    try {
      const login = await pool
        .get(wrong.id)
        .then((api) => api.run("/system/identity/print"))
        .then(
          () => null,
          (error: unknown) => error,
        );
      expect(login).toBeInstanceOf(Error);
      logger.error({ err: login, routerId: wrong.id }, "router command failed");

      const api = await pool.get(right.id);
      const refused = await ensureSecret(api, {
        subscriptionId: 990_001,
        name: "logscan-user",
        password: pppoePassword,
        profile: "no-such-profile",
        disabled: false,
        comment: "tandao:sub:990001",
      }).then(
        () => null,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(Error);
      logger.error({ err: refused, routerId: right.id }, "router command failed");
    } finally {
      await pool.close();
    }
    expect(logged(from, "router command failed")).toBe(true);
    expectNoSecrets(from);
  });

  it("database errors: constraint violations whose parameters are a phone and a PPPoE password", async () => {
    const from = lines.length;
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Akinyi Log",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const start = new Date("2026-07-01T00:00:00Z");
    const end = new Date("2026-08-01T00:00:00Z");
    const insertRaw = (periodEnd: Date) =>
      database.db.execute(sql`
        insert into subscriptions (customer_id, plan_id, network_username, network_password, status,
          current_period_start, current_period_end, billing_anchor)
        values (${customer.id}, ${plan.id}, ${dbPhone}, ${dbPppoePassword}, 'pending',
          ${start.toISOString()}::timestamptz, ${periodEnd.toISOString()}::timestamptz, ${start.toISOString()}::timestamptz)`);
    const failures: unknown[] = [];
    const attempt = async (what: string, run: () => Promise<unknown>) => {
      try {
        await run();
      } catch (error) {
        failures.push(error);
        logger.error({ err: error }, `${what} failed`);
      }
    };
    // A check violation: the error's detail is the whole failing row.
    await attempt("raw insert (check)", () => insertRaw(start));
    // The username taken, then taken again: a unique violation naming the key's value.
    await insertRaw(end);
    await attempt("raw insert (unique)", () => insertRaw(end));
    await attempt("drizzle insert (unique)", () =>
      database.db.insert(subscriptions).values({
        customerId: customer.id,
        planId: plan.id,
        networkUsername: dbPhone,
        networkPassword: dbPppoePassword,
        status: "pending",
        currentPeriodStart: start,
        currentPeriodEnd: end,
        billingAnchor: start,
      }),
    );
    // A foreign key violation through drizzle, with the phone as the username.
    await attempt("drizzle insert (foreign key)", () =>
      database.db.insert(subscriptions).values({
        customerId: 987_654,
        planId: plan.id,
        networkUsername: `${dbPhone}-2`,
        networkPassword: dbPppoePassword,
        status: "pending",
        currentPeriodStart: start,
        currentPeriodEnd: end,
        billingAnchor: start,
      }),
    );
    // A check violation through drizzle: an account number only a walk-in's push may carry.
    await attempt("drizzle insert (check)", () =>
      database.db.insert(customers).values({ accountNumber: "TDW123", phone: dbPhone, name: "Walk In" }),
    );
    expect(failures).toHaveLength(5);
    // Still says what failed: the statement and the constraint.
    expect(lines.slice(from).join("\n")).toMatch(/subscriptions/);
    expectNoSecrets(from);
  });

  it("over everything logged in this file: no secret anywhere", () => {
    expect(lines.length).toBeGreaterThan(10);
    expectNoSecrets();
  });
});
