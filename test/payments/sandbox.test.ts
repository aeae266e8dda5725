import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { FakeClock } from "../../src/clock.ts";
import { loadConfig } from "../../src/config.ts";
import type { Database } from "../../src/db/client.ts";
import { type Payments, startPayments } from "../../src/payments/index.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { intent, paymentCredits, silent } from "./harness.ts";

describe("sandbox mode (no Daraja credentials)", () => {
  let database: Database;
  let server: ServerType;
  let payments: Payments;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await payments?.stop();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await database.close();
  });

  it("starts the built-in Daraja fake, and a requested push is paid about 2 s later", async () => {
    const { ctx } = billingContext(database.db, new FakeClock(new Date()));
    let app: Hono | null = null;
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: (req) => app!.fetch(req), port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    const port = (server.address() as AddressInfo).port;
    const config = loadConfig({ PUBLIC_URL: `http://127.0.0.1:${port}` });
    payments = await startPayments({ config, ctx, logger: silent });
    app = createApp({ db: database.db, logger: silent, mpesaRoutes: payments.routes });
    expect(payments.fake).not.toBeNull();
    expect(payments.callbackToken).toMatch(/^[0-9a-f]{32}$/);

    const plan = await createPlan(database.db, { priceCents: 50_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const asked = await payments.request(
      { kind: "subscriber", id: customer.phone, channel: "ussd" },
      {
        phone: customer.phone,
        purpose: "balance",
        amountCents: 50_000,
        customerId: customer.id,
        channel: "ussd",
      },
    );
    if (!asked.ok) throw new Error(asked.message);
    const started = Date.now();
    let row = await intent(database.db, asked.intentId);
    while (row.status === "pending" && Date.now() - started < 8000) {
      await new Promise((r) => setTimeout(r, 100));
      row = await intent(database.db, asked.intentId);
    }
    expect(row.status).toBe("succeeded");
    expect(Date.now() - started).toBeGreaterThan(1500);
    expect(await paymentCredits(database.db, customer.id)).toContain(50_000);
  });
});
