import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { and, asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BillingContext, defaultBillingSettings } from "../src/billing/context.ts";
import { billingJobs } from "../src/billing/jobs.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { telegramBotInfo } from "../src/bots/telegram/webhook.ts";
import { systemClock } from "../src/clock.ts";
import { chatInbox, jobRuns, messageOutbox, mpesaCallbacks, paymentIntents } from "../src/db/schema/index.ts";
import { createSecretBox, parseSecretKey } from "../src/lib/secret-box.ts";
import { addRouter } from "../src/network/routers.ts";
import { stkCallbackBody } from "../src/payments/mpesa/fake-support.ts";
import { portalTokenKey } from "../src/portal/index.ts";
import { createTokenSigner } from "../src/portal/token.ts";
import { admin, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { eventually, send, startWorkerDev, type WorkerDev } from "./support/wrangler.ts";

/**
 * The Cloudflare Worker (src/worker/index.ts), built as `wrangler deploy --dry-run` builds it
 * (offline, logged out) and run by `wrangler dev` (workerd on this machine) with Hyperdrive's local
 * connection string on the test database: a USSD session, an STK callback, a Telegram update, WhatsApp
 * messages, the captive portal and one Cron Trigger.
 */

const root = path.resolve(import.meta.dirname, "..");
const config = readFileSync(path.join(root, "wrangler.toml"), "utf8");

describe("wrangler.toml", () => {
  it("runs the Worker entry, with one Cron Trigger per billing job schedule", () => {
    expect(config).toMatch(/^main = "src\/worker\/index\.ts"$/m);
    const crons = JSON.parse(/^crons = (\[.*\])$/m.exec(config)?.[1] ?? "[]") as string[];
    expect(new Set(crons)).toEqual(new Set(billingJobs.map((job) => job.schedule)));
  });
});

describe("the Worker's Telegram bot, known without asking Telegram", () => {
  it("is the token's bot id with TELEGRAM_BOT_USERNAME, and refuses a missing name", () => {
    expect(telegramBotInfo("7000000001:AAE-secret", "@TandaoBot")).toMatchObject({
      id: 7_000_000_001,
      is_bot: true,
      username: "TandaoBot",
    });
    expect(() => telegramBotInfo("7000000001:AAE-secret", undefined)).toThrow(/TELEGRAM_BOT_USERNAME/);
    expect(() => telegramBotInfo("not-a-token", "TandaoBot")).toThrow(/TELEGRAM_BOT_TOKEN/);
  });
});

const onServer = process.env.TEST_DATABASE_URL !== undefined;

describe.runIf(onServer)("the Cloudflare Worker, built and run locally", () => {
  const ussdToken = "ussd-worker-test";
  const callbackToken = "cb-worker-test";
  const telegramSecret = "tg-worker-secret-0123456789";
  const whatsappSecret = "wa-worker-app-secret";
  const verifyToken = "wa-worker-verify-token-0123";
  const phoneNumberId = "109876543210";
  /** The Worker's settings: a production configuration with every webhook on (as secrets in a deploy). */
  const vars: Record<string, string> = {
    TANDAO_MODE: "production",
    PUBLIC_URL: "https://isp.example.net",
    USSD_TOKEN: ussdToken,
    MPESA_CALLBACK_TOKEN: callbackToken,
    MPESA_CONSUMER_KEY: "ck",
    MPESA_CONSUMER_SECRET: "cs",
    MPESA_SHORTCODE: "174379",
    MPESA_PASSKEY: "pk",
    AT_USERNAME: "sandbox",
    AT_API_KEY: "at",
    // The key test/support/sealing-key.ts seals with, as the Node service's SECRET_KEY.
    SECRET_KEY: "07".repeat(32),
    TELEGRAM_BOT_TOKEN: "7000000001:worker-test-token",
    TELEGRAM_WEBHOOK_SECRET: telegramSecret,
    TELEGRAM_BOT_USERNAME: "TandaoTestBot",
    WHATSAPP_CLOUD_PHONE_NUMBER_ID: phoneNumberId,
    WHATSAPP_CLOUD_APP_SECRET: whatsappSecret,
    WHATSAPP_CLOUD_VERIFY_TOKEN: verifyToken,
  };
  let database: TestDatabase;
  let ctx: BillingContext;
  let worker: WorkerDev | undefined;
  let base: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    ctx = { db: database.db, clock: systemClock, settings: defaultBillingSettings };
    worker = startWorkerDev(config, vars, database.url!);
    base = await worker.ready;
  }, 90_000);

  afterAll(async () => {
    if (process.env.WORKER_TEST_LOG) console.log(worker?.output());
    await worker?.close();
    await database?.close();
  });

  it("answers /healthz from the database through Hyperdrive", async () => {
    const answer = await send(`${base}/healthz`);
    expect(await answer.json()).toMatchObject({ status: "ok", database: "ok", runtime: "worker" });
  });

  const dial = (phone: string, session: string) => async (text: string) => {
    const answer = await send(`${base}/ussd/${ussdToken}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ sessionId: session, serviceCode: "*384*1#", phoneNumber: phone, text }),
    });
    expect(answer.status).toBe(200);
    return answer.text();
  };

  it("serves a USSD session that asks to pay, and settles the STK callback for it", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const ussd = dial(customer.phone, `ATUid_worker_${customer.id}`);
    expect(await ussd("")).toMatch(/^CON .*\n1\. My account/s);
    expect(await ussd("2")).toMatch(/^CON .*KES 1,500/s);
    expect(await ussd("2*1")).toMatch(/^END .*M-Pesa PIN/s);
    expect(await send(`${base}/ussd`, { method: "POST", body: "" }).then((r) => r.status)).toBe(404);

    // The Worker recorded the intent; the Node service's dispatcher sends the push. Play its part.
    const [intent] = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.customerId, customer.id));
    expect(intent).toMatchObject({ status: "pending", amountCents: 150_000, channel: "ussd" });
    const checkoutRequestId = `ws_CO_worker_${intent!.id}`;
    await database.db
      .update(paymentIntents)
      .set({ merchantRequestId: `mr_${intent!.id}`, checkoutRequestId, sentAt: new Date() })
      .where(eq(paymentIntents.id, intent!.id));

    const receipt = `WK${String(intent!.id).padStart(8, "0")}`;
    const text = JSON.stringify(
      stkCallbackBody({
        merchantRequestId: `mr_${intent!.id}`,
        checkoutRequestId,
        result: { code: 0, desc: "The service request is processed successfully." },
        receipt,
        amount: 1500,
        msisdn: customer.phone.replace(/^\+/, ""),
        paidAt: new Date(),
      }),
    );
    const answer = await send(`${base}/hooks/mp/${callbackToken}/stk`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: text,
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ ResultCode: 0 });
    expect(
      await database.db.select().from(mpesaCallbacks).where(eq(mpesaCallbacks.reference, checkoutRequestId)),
    ).toMatchObject([{ kind: "stk", raw: text, status: "processed", flag: null }]);
    const [settled] = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.id, intent!.id));
    expect(settled).toMatchObject({ status: "succeeded", mpesaReceipt: receipt });
    expect(settled!.paymentId).not.toBeNull();

    // A wrong token changes nothing.
    const stranger = await send(`${base}/hooks/mp/not-the-token/stk`, { method: "POST", body: text });
    expect(stranger.status).toBe(404);
  });

  const inboxOf = (channel: "telegram" | "whatsapp_cloud", chatId: string) =>
    database.db
      .select()
      .from(chatInbox)
      .where(and(eq(chatInbox.channel, channel), eq(chatInbox.chatId, chatId)))
      .orderBy(asc(chatInbox.id));
  const outboxTo = (channel: "telegram" | "whatsapp_cloud", recipient: string) =>
    database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.channel, channel), eq(messageOutbox.recipient, recipient)))
      .orderBy(asc(messageOutbox.id));
  /** What a chat row would show: a view's lines and numbered options, a text, a raw Bot API call's text. */
  const shown = (content: Record<string, unknown> | null) => {
    const c = content as {
      view?: { lines: string[]; options: { key: string; label: string }[] };
      text?: string;
      payload?: { text?: string };
    } | null;
    if (c?.view) return [...c.view.lines, ...c.view.options.map((o) => `${o.key}. ${o.label}`)].join("\n");
    return c?.text ?? c?.payload?.text ?? "";
  };

  it("stores a Telegram update that carries the secret token, and queues the bot's answer", async () => {
    const userId = 700_000_000 + Math.floor(Math.random() * 100_000_000);
    const update = (updateId: number, text: string) => ({
      update_id: updateId,
      message: {
        message_id: updateId,
        date: Math.floor(Date.now() / 1000),
        chat: { id: userId, type: "private", first_name: "Wanjiru" },
        from: { id: userId, is_bot: false, first_name: "Wanjiru" },
        text,
      },
    });
    const post = (body: unknown, secret?: string) =>
      send(`${base}/hooks/tg`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(secret ? { "x-telegram-bot-api-secret-token": secret } : {}),
        },
        body: JSON.stringify(body),
      });

    // Without Telegram's secret token (or with another) nothing is stored, handled or answered.
    expect((await post(update(userId, "hi"))).status).toBe(401);
    expect((await post(update(userId, "hi"), "not-the-webhook-secret-0123")).status).toBe(401);
    expect(await inboxOf("telegram", String(userId))).toEqual([]);
    expect(await outboxTo("telegram", String(userId))).toEqual([]);

    const answer = await post(update(userId, "hi"), telegramSecret);
    expect(answer.status).toBe(200);
    expect(await inboxOf("telegram", String(userId))).toMatchObject([
      { externalId: String(userId), status: "done", attempts: 1 },
    ]);
    // The answer is an outbox row for the Node service's delivery worker, not a call to Telegram.
    const queued = await outboxTo("telegram", String(userId));
    expect(queued.length).toBeGreaterThan(0);
    expect(queued.every((row) => row.status === "pending")).toBe(true);
    expect(queued.map((row) => shown(row.content)).join("\n")).toMatch(/1\. /);

    // Telegram delivering the same update again changes nothing.
    expect((await post(update(userId, "hi"), telegramSecret)).status).toBe(200);
    expect(await outboxTo("telegram", String(userId))).toHaveLength(queued.length);
  });

  it("stores a signed WhatsApp message, answers it through the outbox, and records a payment as an intent", async () => {
    const plan = await createPlan(database.db, { priceCents: 200_000, name: "Fibre 2000" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Otieno Were",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const waId = customer.phone.replace(/^\+/, "");
    let seq = 0;
    const body = (text: string) =>
      JSON.stringify({
        object: "whatsapp_business_account",
        entry: [
          {
            id: "WABA-1",
            changes: [
              {
                field: "messages",
                value: {
                  messaging_product: "whatsapp",
                  metadata: { display_phone_number: "254700000000", phone_number_id: phoneNumberId },
                  messages: [
                    {
                      from: waId,
                      id: `wamid.worker.${customer.id}.${++seq}`,
                      timestamp: String(Math.floor(Date.now() / 1000)),
                      type: "text",
                      text: { body: text },
                    },
                  ],
                },
              },
            ],
          },
        ],
      });
    const signature = (raw: string, secret = whatsappSecret) =>
      `sha256=${createHmac("sha256", secret).update(raw).digest("hex")}`;
    const post = (raw: string, signed: string) =>
      send(`${base}/hooks/wa`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-hub-signature-256": signed },
        body: raw,
      });
    /** Sends one message and waits until the Worker has handled it (after its answer). */
    const say = async (text: string) => {
      const raw = body(text);
      expect((await post(raw, signature(raw))).status).toBe(200);
      const id = `wamid.worker.${customer.id}.${seq}`;
      return eventually(async () => {
        const [row] = await database.db.select().from(chatInbox).where(eq(chatInbox.externalId, id));
        return row?.status === "done" ? row : null;
      }, `message ${id} handled`);
    };

    // Meta's subscription handshake, with the verify token only.
    const challenge = new URLSearchParams({
      "hub.mode": "subscribe",
      "hub.verify_token": verifyToken,
      "hub.challenge": "4242",
    });
    expect(await send(`${base}/hooks/wa?${challenge}`).then((r) => r.text())).toBe("4242");

    // A body signed with another secret is refused before it is read.
    const forged = body("hi");
    expect((await post(forged, signature(forged, "not-the-app-secret"))).status).toBe(401);
    expect(await inboxOf("whatsapp_cloud", waId)).toEqual([]);

    await say("hi");
    const menu = await outboxTo("whatsapp_cloud", waId);
    expect(menu.map((row) => row.status)).toEqual(menu.map(() => "pending"));
    expect(shown(menu.at(-1)!.content)).toMatch(/^1\. My account/m);
    expect(menu.at(-1)!.content).toMatchObject({ kind: "view", view: { customer: true } });

    await say("2");
    expect(shown((await outboxTo("whatsapp_cloud", waId)).at(-1)!.content)).toMatch(/KES 2,000/);
    await say("1");
    expect(shown((await outboxTo("whatsapp_cloud", waId)).at(-1)!.content)).toMatch(/M-Pesa PIN/);
    // Recorded for the Node service's dispatcher: the Worker never talks to Daraja.
    const intents = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.customerId, customer.id));
    expect(intents).toMatchObject([{ status: "pending", amountCents: 200_000, channel: "whatsapp_cloud" }]);
    expect(intents[0]!.checkoutRequestId).toBeNull();
    expect(await inboxOf("whatsapp_cloud", waId)).toHaveLength(3);
  });

  it("serves the captive portal: the packages, and a purchase recorded as a payment intent", async () => {
    const name = `worker-hs-${Date.now().toString(36)}`;
    const { id: routerId } = await addRouter(database.db, createSecretBox(Buffer.alloc(32, 7)), {
      name,
      host: "127.0.0.1",
      port: 1,
      username: "tandao",
      password: "pw",
    });
    const plan = await createPlan(database.db, {
      name: "Worker Hour",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
      periodCount: 1,
      rateLimit: "2M/5M",
    });
    const page = await send(`${base}/portal/${name}`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain("Worker Hour");
    expect(html).toContain("KES 20");
    expect((await send(`${base}/portal/no-such-router`)).status).toBe(404);

    const phone = uniquePhone();
    const pay = await send(`${base}/portal/${name}/pay`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ phone, plan: plan.id, key: `worker-${routerId}-0123456789` }),
    });
    expect(pay.status).toBe(200);
    const { intentId, token } = (await pay.json()) as { intentId: number; token: string };
    const [intent] = await database.db.select().from(paymentIntents).where(eq(paymentIntents.id, intentId));
    expect(intent).toMatchObject({
      status: "pending",
      channel: "portal",
      purpose: "voucher",
      amountCents: 2_000,
      planId: plan.id,
      phone,
      checkoutRequestId: null,
    });
    // Signed with the key the Node service derives from the same SECRET_KEY: either side checks it.
    const signer = createTokenSigner(portalTokenKey(parseSecretKey(vars.SECRET_KEY!)));
    expect(token).toBe(signer.sign(routerId, intentId));
    const status = await send(`${base}/portal/${name}/status/${token}`);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ state: "pending" });
    expect((await send(`${base}/portal/${name}/status/${signer.sign(routerId + 1, intentId)}`)).status).toBe(
      404,
    );
  });

  it("runs the billing jobs of a Cron Trigger once per slot", async () => {
    const cron = "*/5 * * * *";
    const jobs = billingJobs.filter((job) => job.schedule === cron).map((job) => job.name);
    expect(jobs.length).toBeGreaterThan(0);
    for (let i = 0; i < 2; i++) {
      const answer = await send(`${base}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent(cron)}`);
      expect(answer.status).toBe(200);
    }
    const runs = await database.db.select().from(jobRuns);
    for (const job of jobs) {
      const mine = runs.filter((run) => run.job === job);
      // Both triggers fell in the same minute (or the second in the next: then both ran).
      expect(mine.filter((run) => run.status === "ok").length).toBeGreaterThanOrEqual(1);
      for (const run of mine.filter((r) => r.status === "ok")) expect(run.slot!.getTime() % 60_000).toBe(0);
      const slots = mine.filter((run) => run.status === "ok").map((run) => run.slot!.getTime());
      expect(new Set(slots).size).toBe(slots.length);
    }
  });
});
