import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "../../src/app.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { systemClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { createLogger } from "../../src/logger.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import type { MenuServices, MenuSettings } from "../../src/menu/types.ts";
import { type AtFake, startAtFake } from "../../src/messaging/at-fake.ts";
import { createAtSmsSender } from "../../src/messaging/sms-client.ts";
import { deliverDueSms } from "../../src/messaging/sms-worker.ts";
import { DarajaClient } from "../../src/payments/mpesa/daraja.ts";
import { StkDispatcher } from "../../src/payments/mpesa/dispatcher.ts";
import { FakeDaraja } from "../../src/payments/mpesa/fake.ts";
import { callbackPaths, createMpesaRoutes } from "../../src/payments/routes.ts";
import { createUssdRoutes } from "../../src/ussd/routes.ts";

export const silent = createLogger("silent");
export const settings: MenuSettings = {
  isp: "Kibera Net",
  support: "0700 123 456",
  timezone: "Africa/Nairobi",
  minPayCents: 1_000,
  maxPayCents: 150_000_00,
};

/**
 * The app on a real port with the USSD and M-Pesa routes, the Daraja fake behind the real client,
 * and the Africa's Talking fake behind the real `africastalking` package.
 */
export interface UssdWorld {
  baseUrl: string;
  daraja: FakeDaraja;
  at: AtFake;
  /** Posts one Africa's Talking USSD request; returns status and body. */
  post(fields: Record<string, string>, path?: string): Promise<{ status: number; text: string }>;
  /** A dialled session: each call sends the whole `text` so far, like Africa's Talking. */
  dial(phone: string, sessionId?: string): (text: string) => Promise<string>;
  /**
   * Sends the recorded STK pushes, waits for their callbacks (success unless scripted), delivers the
   * SMS outbox (pass after pass, as the worker does: a pass sends one message per recipient).
   */
  settle(): Promise<void>;
  close(): Promise<void>;
}

let sessions = 0;

export async function startUssdWorld(
  ctx: BillingContext,
  db: Db,
  /** `settings`: what the menu is given on top of the defaults above (e.g. sign-up areas). */
  options: { token?: string; settings?: Partial<MenuSettings>; services?: Partial<MenuServices> } = {},
): Promise<UssdWorld> {
  const menuSettings: MenuSettings = { ...settings, ...options.settings };
  // The payer answers the prompt a little after M-Pesa accepted the push (as on a phone, seconds later):
  // a callback that overtakes the dispatcher's own bookkeeping is a case of its own, tested with payments.
  const daraja = await FakeDaraja.start({ defaultDelivery: { outcome: "success", delayMs: 150 } });
  const at = await startAtFake({ username: "kibera", apiKey: "at-test-key" });
  const client = new DarajaClient({
    baseUrl: daraja.url,
    consumerKey: daraja.consumerKey,
    consumerSecret: daraja.consumerSecret,
    shortcode: daraja.shortcode,
    passkey: daraja.passkey,
    clock: systemClock,
  });
  const mpesaToken = "ussdworldtoken42";
  const app = createApp({
    db,
    logger: silent,
    mpesaRoutes: createMpesaRoutes({ ctx, logger: silent, token: mpesaToken }),
    ussdRoutes: createUssdRoutes({
      db,
      services: { ...createMenuServices(ctx, { planCacheMs: 0 }), ...options.services },
      settings: menuSettings,
      logger: silent,
      token: options.token,
    }),
  });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dispatcher = new StkDispatcher({
    ctx,
    gateway: client,
    logger: silent,
    callbackUrl: `${baseUrl}${callbackPaths.stk(mpesaToken)}`,
    baseBackoffMs: 10,
  });
  const sender = createAtSmsSender({ username: "kibera", apiKey: "at-test-key", smsUrl: at.smsUrl });

  const post: UssdWorld["post"] = async (fields, path = "/ussd") => {
    const response = await fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    });
    return { status: response.status, text: await response.text() };
  };

  return {
    baseUrl,
    daraja,
    at,
    post,
    dial(phone, sessionId = `ATUid_${process.pid}_${++sessions}`) {
      return async (text) => {
        const { status, text: body } = await post({
          sessionId,
          serviceCode: "*384*4242#",
          phoneNumber: phone,
          text,
          networkCode: "63902",
        });
        if (status !== 200) throw new Error(`USSD answered ${status}: ${body}`);
        return body;
      };
    },
    async settle() {
      while ((await dispatcher.runOnce()) > 0) await daraja.idle();
      await daraja.idle();
      for (let pass = 0; pass < 20; pass++) {
        const { sent } = await deliverDueSms({
          db,
          clock: ctx.clock,
          sender,
          isp: settings.isp,
          logger: silent,
        });
        if (sent === 0) break;
      }
    },
    async close() {
      await dispatcher.stop();
      await daraja.close();
      await at.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Pages through a list (`98`) until `item` shows; returns the input path that chooses it. */
export async function choose(
  ussd: (text: string) => Promise<string>,
  path: string,
  item: RegExp,
): Promise<string> {
  for (let page = path; ; page += "*98") {
    const screen = await ussd(page);
    const index = item.exec(screen)?.[1];
    if (index) return `${page}*${index}`;
    if (!screen.includes("\n98. ")) throw new Error(`${item} is not in the list: ${screen}`);
  }
}
