import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isSandbox, loadConfig } from "../src/config.ts";
import { paymentIntents } from "../src/db/schema/index.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { createLogger } from "../src/logger.ts";
import { startMessaging } from "../src/messaging/index.ts";
import { ModeError } from "../src/mode.ts";
import { startPayments } from "../src/payments/index.ts";
import { activeSubscriber, billingContext, createPlan } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

/**
 * One explicit mode: nothing set is the sandbox; any outside credential means someone meant
 * production, which then needs every production setting; the two never mix.
 */

type Env = Record<string, string | undefined>;

/** Settings that speak to an outside service (src/mode.ts). */
const outsideCredentials = [
  "MPESA_CONSUMER_KEY",
  "MPESA_CONSUMER_SECRET",
  "MPESA_SHORTCODE",
  "MPESA_PASSKEY",
  "MPESA_TILL",
  "AT_USERNAME",
  "AT_API_KEY",
  "AT_SENDER_ID",
  "TELEGRAM_BOT_TOKEN",
] as const;

/** What production cannot start without. */
const requiredInProduction = [
  "MPESA_CONSUMER_KEY",
  "MPESA_CONSUMER_SECRET",
  "MPESA_SHORTCODE",
  "MPESA_PASSKEY",
  "MPESA_CALLBACK_TOKEN",
  "AT_USERNAME",
  "AT_API_KEY",
  "SECRET_KEY",
  "PUBLIC_URL",
  "USSD_TOKEN",
] as const;

const production: Env = {
  TANDAO_MODE: "production",
  MPESA_CONSUMER_KEY: "ck-live-7f3a",
  MPESA_CONSUMER_SECRET: "cs-live-91bd",
  MPESA_SHORTCODE: "600123",
  MPESA_PASSKEY: "pk-live-c0ffee",
  MPESA_CALLBACK_TOKEN: "cbt0k3nAbc123",
  AT_USERNAME: "kiberanet",
  AT_API_KEY: "atsk-live-5e5e",
  SECRET_KEY: "ab".repeat(32),
  PUBLIC_URL: "https://isp.example",
  USSD_TOKEN: "ussd-t0k3n-42",
};

function without(env: Env, key: string): Env {
  const copy = { ...env };
  delete copy[key];
  return copy;
}

/** The ModeError loadConfig throws for `env` (fails the test when it accepts it). */
function refusal(env: Env): ModeError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ModeError) return error;
    throw error;
  }
  throw new Error(`loadConfig accepted ${Object.keys(env).join(", ")}`);
}

const names = (key: string) => new RegExp(`\\b${key}\\b`);

describe("mode: nothing set is the sandbox", () => {
  it("no setting at all: sandbox", () => {
    const config = loadConfig({});
    expect(config.mode).toBe("sandbox");
    expect(isSandbox(config)).toBe(true);
  });

  it("settings that are not outside credentials keep the sandbox (a database, a port, a USSD token)", () => {
    const config = loadConfig({
      PORT: "3001",
      DATABASE_URL: "postgres://app@db.example:5432/tandao",
      USSD_TOKEN: "abc",
      MPESA_CALLBACK_TOKEN: "def",
    });
    expect(config.mode).toBe("sandbox");
  });

  it("TANDAO_MODE=sandbox with no credential: sandbox", () => {
    expect(loadConfig({ TANDAO_MODE: "sandbox" }).mode).toBe("sandbox");
  });

  it("an unknown TANDAO_MODE is refused, naming it", () => {
    expect(() => loadConfig({ TANDAO_MODE: "live" })).toThrow(/TANDAO_MODE/);
  });
});

describe("mode: an outside credential without TANDAO_MODE refuses to start", () => {
  it.each(outsideCredentials)("%s alone: refused, naming it and not its value", (key) => {
    const value = `value-of-${key.toLowerCase()}-9q`;
    const error = refusal({ [key]: value });
    expect(error.problems).toHaveLength(1);
    expect(error.message).toMatch(names(key));
    expect(error.message).toMatch(/TANDAO_MODE/);
    expect(error.message).not.toContain(value);
  });

  it("names every credential that is set, in one message", () => {
    const error = refusal({ MPESA_CONSUMER_KEY: "k", AT_API_KEY: "a", TELEGRAM_BOT_TOKEN: "t" });
    for (const key of ["MPESA_CONSUMER_KEY", "AT_API_KEY", "TELEGRAM_BOT_TOKEN"])
      expect(error.message).toMatch(names(key));
  });
});

describe("mode: TANDAO_MODE=sandbox never runs with a credential (mixed)", () => {
  it.each(outsideCredentials)("TANDAO_MODE=sandbox with %s: refused, naming it", (key) => {
    const value = `value-of-${key.toLowerCase()}-8w`;
    const error = refusal({ TANDAO_MODE: "sandbox", [key]: value });
    expect(error.problems).toHaveLength(1);
    expect(error.message).toMatch(names(key));
    expect(error.message).toMatch(/sandbox/);
    expect(error.message).not.toContain(value);
  });
});

describe("mode: production", () => {
  it("with every setting: production", () => {
    const config = loadConfig(production);
    expect(config.mode).toBe("production");
    expect(isSandbox(config)).toBe(false);
    expect(config.PUBLIC_URL).toBe("https://isp.example");
  });

  it.each(requiredInProduction)("without %s: refused, naming exactly that setting", (key) => {
    for (const env of [without(production, key), { ...production, [key]: "" }]) {
      const error = refusal(env);
      expect(error.problems).toHaveLength(1);
      const [problem] = error.problems;
      expect(problem).toMatch(new RegExp(`^${key}\\b`));
      for (const other of requiredInProduction)
        if (other !== key) expect(problem, `${key}'s problem names ${other}`).not.toMatch(names(other));
    }
  });

  it("with nothing but TANDAO_MODE=production: every missing setting is named at once", () => {
    const error = refusal({ TANDAO_MODE: "production" });
    for (const key of requiredInProduction) expect(error.message).toMatch(names(key));
    expect(error.problems).toHaveLength(requiredInProduction.length);
  });

  it("never names a value: the message carries no secret of the settings given", () => {
    const error = refusal(without(production, "USSD_TOKEN"));
    for (const [key, value] of Object.entries(production))
      if (key !== "TANDAO_MODE" && value) expect(error.message).not.toContain(value);
  });

  it("PUBLIC_URL over http: refused, naming PUBLIC_URL", () => {
    const error = refusal({ ...production, PUBLIC_URL: "http://isp.example" });
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatch(/^PUBLIC_URL\b.*https/);
  });

  it("USSD_NO_TOKEN=true without USSD_ALLOWED_IPS: refused, naming USSD_ALLOWED_IPS", () => {
    for (const env of [
      { ...without(production, "USSD_TOKEN"), USSD_NO_TOKEN: "true" },
      { ...without(production, "USSD_TOKEN"), USSD_NO_TOKEN: "true", USSD_ALLOWED_IPS: " , " },
    ]) {
      const error = refusal(env);
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(/USSD_NO_TOKEN/);
      expect(error.problems[0]).toMatch(/USSD_ALLOWED_IPS/);
    }
  });

  it("USSD_NO_TOKEN=true with USSD_ALLOWED_IPS: production, with the allowlist", () => {
    const config = loadConfig({
      ...without(production, "USSD_TOKEN"),
      USSD_NO_TOKEN: "true",
      USSD_ALLOWED_IPS: "41.1.1.1, 41.1.1.2",
    });
    expect(config.mode).toBe("production");
    expect(config.USSD_TOKEN).toBeUndefined();
    expect(config.USSD_ALLOWED_IPS).toEqual(["41.1.1.1", "41.1.1.2"]);
  });

  it("a SECRET_KEY that is not 32 bytes is refused at start, naming SECRET_KEY", () => {
    // main.ts parses the key only after opening and migrating the database, and a bad one ends the
    // process with an uncaught stack trace: it must stop the start where every other setting is
    // checked, with the same named-settings message.
    expect(() => loadConfig({ ...production, SECRET_KEY: "too-short" })).toThrow(/SECRET_KEY/);
  });

  it("MPESA_ENV is `production` (default) or `test`; the old `sandbox` is refused, naming it", () => {
    expect(loadConfig(production).MPESA_ENV).toBe("production");
    expect(loadConfig({ ...production, MPESA_ENV: "test" }).MPESA_ENV).toBe("test");
    expect(() => loadConfig({ ...production, MPESA_ENV: "sandbox" })).toThrow(/MPESA_ENV/);
  });
});

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("production never starts a fake", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    // PPPoE passwords are sealed at rest with the process key (main.ts registers SECRET_KEY).
    useSealingKey(createSecretBox(randomBytes(32)));
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.close();
  });

  it("startPayments and startMessaging in production: no fake; a push goes nowhere and nothing is paid", async () => {
    const port = await closedPort();
    const config = loadConfig({
      ...production,
      MPESA_BASE_URL: `http://127.0.0.1:${port}`,
      AT_SMS_URL: `http://127.0.0.1:${port}/version1/messaging`,
      DATA_DIR: "/nonexistent/tandao-test",
    });
    expect(config.mode).toBe("production");
    const { ctx } = billingContext(database.db);
    const logger = createLogger("silent");
    const payments = await startPayments({ config, ctx, logger, background: false });
    const messaging = await startMessaging({
      config,
      db: database.db,
      clock: ctx.clock,
      logger,
      background: false,
    });
    try {
      expect(payments.fake).toBeNull();
      expect(messaging.fake).toBeNull();
      expect(payments.callbackToken).toBe(production.MPESA_CALLBACK_TOKEN);

      // A payment asked for in production is sent to the configured (here: dead) Daraja, never "paid".
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const { customer } = await activeSubscriber(ctx, plan.id);
      const asked = await payments.request(
        { kind: "subscriber", id: customer.phone, channel: "ussd" },
        {
          phone: customer.phone,
          purpose: "balance",
          amountCents: 100_000,
          customerId: customer.id,
          channel: "ussd",
        },
      );
      expect(asked.ok).toBe(true);
      if (!asked.ok) return;
      await payments.dispatcher.runOnce();
      const [intent] = await database.db
        .select()
        .from(paymentIntents)
        .where(eq(paymentIntents.id, asked.intentId));
      expect(intent!.status).not.toBe("succeeded");
      expect(intent!.mpesaReceipt).toBeNull();

      // SMS go to the configured gateway too: nothing accepts them.
      await expect(messaging.sender.send(customer.phone, "hello")).rejects.toThrow();
    } finally {
      await payments.stop();
      await messaging.stop();
    }
  });
});
