import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import type { MenuSettings } from "../../src/menu/types.ts";
import { maxCallbackBytes } from "../../src/payments/routes.ts";
import { createUssdRoutes, maxUssdBytes } from "../../src/ussd/routes.ts";
import { silent, token } from "./harness.ts";
import { c2bConfirmUrl, chunked, postRaw, serveApp } from "./inbox-support.ts";
import { type InboxWorld, startInboxWorld } from "./inbox-world.ts";

/**
 * The size limits of the routes M-Pesa and the USSD gateway post to, over real HTTP: a body over the
 * limit is refused with 413 and nothing is stored, whether it comes with a length or chunked.
 */

const menuSettings: MenuSettings = {
  isp: "Kibera Net",
  support: "0700 123 456",
  timezone: "Africa/Nairobi",
  minPayCents: 1_000,
  maxPayCents: 150_000_00,
};

let world: InboxWorld;
let h: InboxWorld["h"];
let postAndRead: InboxWorld["postAndRead"];
let ussd: { baseUrl: string; close(): Promise<void> };
beforeAll(async () => {
  world = await startInboxWorld();
  ({ h, postAndRead } = world);
  ussd = await serveApp(
    createApp({
      db: world.database.db,
      logger: silent,
      ussdRoutes: createUssdRoutes({
        db: world.database.db,
        services: createMenuServices(world.ctx, { planCacheMs: 0 }),
        settings: menuSettings,
        logger: silent,
      }),
    }),
  );
});
afterAll(async () => {
  await ussd?.close();
  await world?.close();
});

describe("size limits", () => {
  const padded = (bytes: number) => {
    const head = '{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_big","ResultCode":0,"Pad":"';
    const tail = '"}}}';
    return head + "x".repeat(bytes - head.length - tail.length) + tail;
  };

  it.each([
    ["200 KB", 200 * 1024],
    ["5 MB", 5 * 1024 * 1024],
  ])("a %s STK callback gets 413 and nothing is stored", async (_name, bytes) => {
    const text = padded(bytes);
    expect(Buffer.byteLength(text)).toBe(bytes);
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(413);
    expect(stored).toEqual([]);
  });

  it("a 200 KB body sent chunked, without a length, gets 413 too (STK and paybill)", async () => {
    for (const url of [h.stkUrl, c2bConfirmUrl(h)]) {
      const { answer, stored } = await postAndRead(url, chunked(padded(200 * 1024)));
      expect(answer.status).toBe(413);
      expect(stored).toEqual([]);
    }
  });

  it("the limit is 64 KiB exactly: one byte over is refused, at the limit is stored", async () => {
    const over = await postAndRead(h.stkUrl, padded(maxCallbackBytes + 1));
    expect(over.answer.status).toBe(413);
    expect(over.stored).toEqual([]);
    const at = await postAndRead(h.stkUrl, padded(maxCallbackBytes));
    expect(at.answer.status).toBe(200);
    expect(at.stored).toMatchObject([{ status: "processed", flag: "malformed" }]);
    expect(at.stored[0]!.raw).toHaveLength(maxCallbackBytes);
  });

  it("a USSD post over 8 KiB gets 413 (with a length and chunked); a normal one is answered", async () => {
    const form = (text: string) =>
      new URLSearchParams({
        sessionId: "ATUid_big",
        serviceCode: "*384*4242#",
        phoneNumber: "+254712000111",
        text,
      }).toString();
    const big = form("1*".repeat(maxUssdBytes / 2));
    expect(Buffer.byteLength(big)).toBeGreaterThan(maxUssdBytes);
    const type = "application/x-www-form-urlencoded";
    expect((await postRaw(`${ussd.baseUrl}/ussd`, big, type)).status).toBe(413);
    expect((await postRaw(`${ussd.baseUrl}/ussd`, chunked(big, 1024), type)).status).toBe(413);
    const normal = await postRaw(`${ussd.baseUrl}/ussd`, form(""), type);
    expect(normal.status).toBe(200);
    expect(normal.text).toMatch(/^CON /);
  });
});

describe("wiring", () => {
  it("the harness's routes are the ones under test (token and path)", async () => {
    expect(h.stkUrl).toContain(`/hooks/mp/${token}/stk`);
    const wrong = await postRaw(h.stkUrl.replace(token, "nope"), "{}");
    expect(wrong.status).toBe(404);
  });
});
