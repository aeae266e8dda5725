import { Writable } from "node:stream";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { FakeClock, MINUTE } from "../src/clock.ts";
import type { Db } from "../src/db/client.ts";
import {
  jobRuns,
  messageOutbox,
  paymentIntents,
  payments,
  provisioningOutbox,
  routers,
} from "../src/db/schema/index.ts";
import { createLogger } from "../src/logger.ts";
import { createMetrics, requestIdFrom } from "../src/metrics/index.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { sample } from "./support/metrics.ts";

const token = "metricsTokenTest4f9a2c";
const bearer = { Authorization: `Bearer ${token}` };
const clock = new FakeClock("2026-05-01T10:00:00Z");

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

/** A logger writing its lines, parsed, to an array. */
function capturedLogger(level = "info") {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger(level, sink), lines, raw };
}

async function scrape(app: Hono): Promise<string> {
  const response = await app.request("/metrics", { headers: bearer });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return response.text();
}

describe("GET /metrics", () => {
  it("answers 404 when no token is configured", async () => {
    const app = createApp({ db: database.db, logger: createLogger("silent") });
    expect((await app.request("/metrics")).status).toBe(404);
    expect((await app.request("/metrics", { headers: bearer })).status).toBe(404);
  });

  it("answers 401 without the right bearer token", async () => {
    const app = createApp({ db: database.db, logger: createLogger("silent"), metricsToken: token });
    expect((await app.request("/metrics")).status).toBe(401);
    const wrong = await app.request("/metrics", { headers: { Authorization: `Bearer ${token}x` } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect((await wrong.text()).includes("http_request")).toBe(false);
    const basic = await app.request("/metrics", { headers: { Authorization: `Basic ${token}` } });
    expect(basic.status).toBe(401);
  });

  it("serves request latency per route pattern, method and status class", async () => {
    const app = createApp({
      db: database.db,
      logger: createLogger("silent"),
      metricsToken: token,
      ussdRoutes: new Hono().post("/:token?", (c) => c.text("END bye")),
    });
    await app.request("/healthz");
    await app.request("/healthz");
    await app.request("/ussd/secret-path-token", { method: "POST" });
    await app.request("/nowhere/at/all");
    const text = await scrape(app);
    expect(text).toContain("# TYPE http_request_duration_seconds histogram");
    expect(
      sample(text, "http_request_duration_seconds_count", {
        method: "GET",
        route: "/healthz",
        status_class: "2xx",
      }),
    ).toBe(2);
    expect(
      sample(text, "http_request_duration_seconds_count", {
        method: "POST",
        route: "/ussd/:token?",
        status_class: "2xx",
      }),
    ).toBe(1);
    expect(
      sample(text, "http_request_duration_seconds_count", {
        method: "GET",
        route: "unmatched",
        status_class: "4xx",
      }),
    ).toBe(1);
    // A path (which can carry a secret) never becomes a label.
    expect(text).not.toContain("secret-path-token");
    expect(text).not.toContain("/nowhere");
    expect(text).toContain("process_cpu_user_seconds_total");
  });

  it("keeps one registry per app", async () => {
    const first = createApp({ db: database.db, logger: createLogger("silent"), metricsToken: token });
    const second = createApp({ db: database.db, logger: createLogger("silent"), metricsToken: token });
    await first.request("/healthz");
    const count = { method: "GET", route: "/healthz", status_class: "2xx" };
    expect(sample(await scrape(first), "http_request_duration_seconds_count", count)).toBe(1);
    expect(sample(await scrape(second), "http_request_duration_seconds_count", count)).toBeUndefined();
  });

  it("reads outbox depth and age per router, messages, payments, intents and job runs from the database", async () => {
    const db = database.db;
    const app = createApp({ db, logger: createLogger("silent"), metricsToken: token, clock });
    const [kibera] = await db
      .insert(routers)
      .values({ name: "Kibera-1", host: "10.0.0.1", username: "api", passwordEncrypted: "x" })
      .returning();
    await db
      .insert(routers)
      .values({ name: "Roysambu", host: "10.0.0.2", username: "api", passwordEncrypted: "x" });

    const before = await scrape(app);
    expect(sample(before, "tandao_metrics_database_up")).toBe(1);
    expect(sample(before, "tandao_provisioning_pending", { router: "Kibera-1" })).toBe(0);
    expect(sample(before, "tandao_provisioning_pending", { router: "all" })).toBe(0);
    expect(sample(before, "tandao_provisioning_oldest_pending_age_seconds", { router: "Kibera-1" })).toBe(0);
    expect(sample(before, "tandao_payments", { status: "applied" })).toBe(0);
    expect(sample(before, "tandao_messages", { channel: "sms", status: "pending" })).toBe(0);
    expect(sample(before, "tandao_payment_intents", { status: "pending" })).toBe(0);

    const now = clock.now();
    const ago = (minutes: number) => new Date(now.getTime() - minutes * MINUTE);
    await db.insert(provisioningOutbox).values([
      { routerId: kibera!.id, action: "suspend", nextAttemptAt: now, createdAt: ago(10) },
      { routerId: kibera!.id, action: "restore", nextAttemptAt: now, createdAt: ago(3) },
      { routerId: kibera!.id, action: "restore", status: "dead", nextAttemptAt: now, createdAt: ago(60) },
      { routerId: kibera!.id, action: "restore", status: "done", nextAttemptAt: now, createdAt: ago(90) },
      { routerId: null, action: "ensure_profile", nextAttemptAt: now, createdAt: ago(1) },
    ]);
    await db.insert(messageOutbox).values([
      { channel: "sms", recipient: "+254700000001", template: "t", nextAttemptAt: now, createdAt: now },
      { channel: "sms", recipient: "+254700000002", template: "t", nextAttemptAt: now, createdAt: now },
      {
        channel: "sms",
        recipient: "+254700000003",
        template: "t",
        status: "done",
        nextAttemptAt: now,
        createdAt: now,
      },
      {
        channel: "telegram",
        recipient: "42",
        template: "t",
        status: "dead",
        nextAttemptAt: now,
        createdAt: now,
      },
    ]);
    await db.insert(payments).values([
      {
        method: "cash",
        provider: "cash",
        providerRef: "m-1",
        amountCents: 100_00,
        status: "unmatched",
        receivedAt: now,
      },
      {
        method: "cash",
        provider: "cash",
        providerRef: "m-2",
        amountCents: 200_00,
        status: "unmatched",
        receivedAt: now,
      },
    ]);
    await db.insert(paymentIntents).values([
      { phone: "+254700000001", purpose: "balance", amountCents: 100_00, channel: "ussd", updatedAt: now },
      {
        phone: "+254700000002",
        purpose: "voucher",
        amountCents: 50_00,
        channel: "portal",
        status: "succeeded",
        updatedAt: now,
      },
    ]);
    await db.insert(jobRuns).values([
      { job: "invoicing", startedAt: now, status: "ok" },
      { job: "invoicing", startedAt: now, status: "failed", error: "boom" },
      { job: "invoicing", startedAt: now, status: "skipped" },
      { job: "dunning", startedAt: now, status: "ok" },
    ]);

    const after = await scrape(app);
    expect(sample(after, "tandao_provisioning_pending", { router: "Kibera-1" })).toBe(2);
    expect(sample(after, "tandao_provisioning_pending", { router: "Roysambu" })).toBe(0);
    expect(sample(after, "tandao_provisioning_pending", { router: "all" })).toBe(1);
    expect(sample(after, "tandao_provisioning_dead", { router: "Kibera-1" })).toBe(1);
    expect(sample(after, "tandao_provisioning_dead", { router: "all" })).toBe(0);
    expect(sample(after, "tandao_provisioning_oldest_pending_age_seconds", { router: "Kibera-1" })).toBe(600);
    expect(sample(after, "tandao_provisioning_oldest_pending_age_seconds", { router: "all" })).toBe(60);
    expect(sample(after, "tandao_provisioning_oldest_pending_age_seconds", { router: "Roysambu" })).toBe(0);
    expect(sample(after, "tandao_messages", { channel: "sms", status: "pending" })).toBe(2);
    expect(sample(after, "tandao_messages", { channel: "sms", status: "done" })).toBe(1);
    expect(sample(after, "tandao_messages", { channel: "telegram", status: "dead" })).toBe(1);
    expect(sample(after, "tandao_payments", { status: "unmatched" })).toBe(2);
    expect(sample(after, "tandao_payments", { status: "applied" })).toBe(0);
    expect(sample(after, "tandao_payment_intents", { status: "pending" })).toBe(1);
    expect(sample(after, "tandao_payment_intents", { status: "succeeded" })).toBe(1);
    expect(sample(after, "tandao_job_runs", { job: "invoicing" })).toBe(3);
    expect(sample(after, "tandao_job_failures", { job: "invoicing" })).toBe(1);
    expect(sample(after, "tandao_job_runs", { job: "dunning" })).toBe(1);
    expect(sample(after, "tandao_job_failures", { job: "dunning" })).toBe(0);

    // The figures follow the work: one command delivered, time passes.
    await db.delete(provisioningOutbox);
    clock.advance(5 * MINUTE);
    await db.insert(provisioningOutbox).values({
      routerId: kibera!.id,
      action: "suspend",
      nextAttemptAt: now,
      createdAt: ago(10),
    });
    const later = await scrape(app);
    expect(sample(later, "tandao_provisioning_pending", { router: "Kibera-1" })).toBe(1);
    expect(sample(later, "tandao_provisioning_oldest_pending_age_seconds", { router: "Kibera-1" })).toBe(900);
    expect(sample(later, "tandao_provisioning_pending", { router: "all" })).toBe(0);
    expect(sample(later, "tandao_provisioning_dead", { router: "Kibera-1" })).toBe(0);
  });

  it("still answers, with database_up 0, when the database is gone", async () => {
    const broken = await createTestDatabase();
    await broken.close();
    const { logger, lines } = capturedLogger("warn");
    const app = createApp({ db: broken.db, logger, metricsToken: token });
    const text = await scrape(app);
    expect(sample(text, "tandao_metrics_database_up")).toBe(0);
    expect(sample(text, "tandao_payments", { status: "applied" })).toBeUndefined();
    expect(lines.some((line) => line.msg === "metrics: database figures not read")).toBe(true);
  });

  it("does not wait for a database that does not answer", async () => {
    const hanging = { transaction: () => new Promise(() => {}) } as unknown as Db;
    const { logger, lines } = capturedLogger("warn");
    const metrics = createMetrics({ db: hanging, logger, databaseTimeoutMs: 50, processMetrics: false });
    const started = Date.now();
    const text = await metrics.render();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(sample(text, "tandao_metrics_database_up")).toBe(0);
    expect(lines.some((line) => line.msg === "metrics: database figures not read")).toBe(true);
  });
});

describe("request id and request log", () => {
  it("keeps a well-formed X-Request-Id and replaces anything else", () => {
    expect(requestIdFrom("abc-123_x.Y")).toBe("abc-123_x.Y");
    expect(requestIdFrom("a".repeat(64))).toBe("a".repeat(64));
    for (const bad of [undefined, "", "a".repeat(65), "has space", "new\nline", "semi;colon"]) {
      const replaced = requestIdFrom(bad);
      expect(replaced).not.toBe(bad);
      expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it("echoes the caller's id, or sends a new one, and logs it with the route pattern", async () => {
    const { logger, lines, raw } = capturedLogger("info");
    const app = createApp({
      db: database.db,
      logger,
      ussdRoutes: new Hono()
        .post("/:token?", (c) => c.text("END bye"))
        .get(
          "/own",
          () => new Response("made by the handler", { headers: { "content-type": "text/plain" } }),
        ),
    });
    const own = await app.request("/ussd/own", { headers: { "X-Request-Id": "own-7" } });
    expect(own.headers.get("x-request-id")).toBe("own-7");
    expect(await own.text()).toBe("made by the handler");
    const echoed = await app.request("/ussd/secret-path-token", {
      method: "POST",
      headers: { "X-Request-Id": "edge-42.a_b" },
    });
    expect(echoed.headers.get("x-request-id")).toBe("edge-42.a_b");

    const fresh = await app.request("/ussd", { method: "POST", headers: { "X-Request-Id": "no good!" } });
    const generated = fresh.headers.get("x-request-id");
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    const requests = lines.filter((line) => line.msg === "request");
    expect(requests).toHaveLength(3);
    expect(requests[1]).toMatchObject({
      level: 30,
      requestId: "edge-42.a_b",
      method: "POST",
      route: "/ussd/:token?",
      status: 200,
    });
    expect(typeof requests[0]!.ms).toBe("number");
    expect(requests[2]).toMatchObject({ requestId: generated, route: "/ussd/:token?" });
    expect(raw.join("\n")).not.toContain("secret-path-token");
  });

  it("carries the id on errors and not-found answers too", async () => {
    const { logger, lines } = capturedLogger("info");
    const app = createApp({
      db: database.db,
      logger,
      mpesaRoutes: new Hono().post("/:token/stk", () => {
        throw new Error("boom");
      }),
    });
    const failed = await app.request("/hooks/mp/secret-cb/stk", {
      method: "POST",
      headers: { "X-Request-Id": "req-err-1" },
    });
    expect(failed.status).toBe(500);
    expect(failed.headers.get("x-request-id")).toBe("req-err-1");
    const missing = await app.request("/missing", { headers: { "X-Request-Id": "req-404" } });
    expect(missing.status).toBe(404);
    expect(missing.headers.get("x-request-id")).toBe("req-404");

    expect(lines.find((line) => line.msg === "unhandled error")).toMatchObject({
      requestId: "req-err-1",
      route: "/hooks/mp/:token/stk",
    });
    const requests = lines.filter((line) => line.msg === "request");
    expect(requests).toEqual([
      expect.objectContaining({
        requestId: "req-err-1",
        route: "/hooks/mp/:token/stk",
        status: 500,
        level: 30,
      }),
      expect.objectContaining({ requestId: "req-404", route: "unmatched", status: 404, level: 30 }),
    ]);
    expect(JSON.stringify(lines)).not.toContain("secret-cb");
  });

  it("logs health checks and scrapes at debug, so probes do not flood the log", async () => {
    const { logger, lines } = capturedLogger("debug");
    const app = createApp({ db: database.db, logger, metricsToken: token });
    await app.request("/healthz", { headers: { "X-Request-Id": "probe-1" } });
    await app.request("/metrics", { headers: { ...bearer, "X-Request-Id": "probe-2" } });
    await app.request("/metrics", { headers: { "X-Request-Id": "probe-3" } });
    const requests = lines.filter((line) => line.msg === "request");
    expect(requests).toEqual([
      expect.objectContaining({ requestId: "probe-1", route: "/healthz", status: 200, level: 20 }),
      expect.objectContaining({ requestId: "probe-2", route: "/metrics", status: 200, level: 20 }),
      expect.objectContaining({ requestId: "probe-3", route: "/metrics", status: 401, level: 30 }),
    ]);
    expect(JSON.stringify(lines)).not.toContain(token);
  });
});
