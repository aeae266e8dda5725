import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.ts";
import { DarajaClient } from "../../src/payments/mpesa/daraja.ts";
import { FakeDaraja } from "../../src/payments/mpesa/fake.ts";
import { createSimulatorRoutes } from "../../src/simulator/index.ts";
import { waitFor } from "../network/support.ts";

/** The Daraja fake's held mode (a person answers the prompt) and the simulator's JSON endpoints. */

let fake: FakeDaraja;
let client: DarajaClient;
let server: ServerType;
let callbackUrl: string;
const callbacks: { CheckoutRequestID: string; ResultCode: number; CallbackMetadata?: unknown }[] = [];

const clientOf = (daraja: FakeDaraja) =>
  new DarajaClient({
    baseUrl: daraja.url,
    consumerKey: daraja.consumerKey,
    consumerSecret: daraja.consumerSecret,
    shortcode: daraja.shortcode,
    passkey: daraja.passkey,
    clock: systemClock,
  });

beforeAll(async () => {
  // A held prompt waits for its answer as long as M-Pesa's does (90 s): on a loaded machine a short
  // timeout would answer it before the test does.
  fake = await FakeDaraja.start();
  client = clientOf(fake);
  const app = new Hono();
  app.post("/cb", async (c) => {
    const body = (await c.req.json()) as { Body: { stkCallback: (typeof callbacks)[number] } };
    callbacks.push(body.Body.stkCallback);
    return c.json({ ResultCode: 0 });
  });
  server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  callbackUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb`;
});

afterAll(async () => {
  await fake.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const push = (msisdn: string, amountShillings = 1500, through = client) =>
  through.stkPush({ msisdn, amountShillings, accountReference: "TD00001", description: "Pay", callbackUrl });

const callbackOf = async (checkoutId: string) => {
  await waitFor(() => callbacks.some((c) => c.CheckoutRequestID === checkoutId), 5_000, 10);
  return callbacks.find((c) => c.CheckoutRequestID === checkoutId)!;
};

describe("the Daraja fake, held for a person's decision", () => {
  it("waits for the payer: pay, wrong PIN, cancel and ignore call back with Daraja's ResultCodes", async () => {
    fake.holdPushes(true);
    try {
      const cases = [
        { phone: "254711000001", answer: (id: string) => fake.approve(id, "1234"), code: 0 },
        { phone: "254711000002", answer: (id: string) => fake.wrongPin(id), code: 2001 },
        { phone: "254711000003", answer: (id: string) => fake.cancel(id), code: 1032 },
        { phone: "254711000004", answer: (id: string) => fake.ignore(id), code: 1037 },
      ];
      for (const { phone, answer, code } of cases) {
        const accepted = await push(phone);
        const id = accepted.CheckoutRequestID;
        expect(fake.pendingPushes(`+${phone}`)).toMatchObject([
          { checkoutRequestId: id, msisdn: phone, amount: 1500, accountReference: "TD00001" },
        ]);
        // Still open: the query says so, and a second push to the phone is refused as M-Pesa does.
        await expect(client.stkQuery(id)).rejects.toThrow(/being processed/);
        await expect(push(phone)).rejects.toThrow(/Unable to lock subscriber/);
        expect(callbacks.some((c) => c.CheckoutRequestID === id)).toBe(false);

        expect(answer(id)).toBe(true);
        expect(answer(id)).toBe(false);
        expect(fake.pendingPushes(phone)).toEqual([]);
        const callback = await callbackOf(id);
        expect(callback.ResultCode).toBe(code);
        expect(Boolean(callback.CallbackMetadata)).toBe(code === 0);
        expect(Number((await client.stkQuery(id)).ResultCode)).toBe(code);
      }
      expect(() => fake.approve("ws_CO_none", "12")).toThrow(/4 digits/);
    } finally {
      fake.holdPushes(false);
    }
  });

  it("times out an unanswered prompt (1037); with holding off, pushes succeed on their own again", async () => {
    const quick = await FakeDaraja.start({ heldTimeoutMs: 300 });
    try {
      const through = clientOf(quick);
      quick.holdPushes(true);
      const held = await push("254711000005", 1500, through);
      quick.holdPushes(false);
      expect((await callbackOf(held.CheckoutRequestID)).ResultCode).toBe(1037);
      const free = await push("254711000006", 1500, through);
      expect(quick.pendingPushes("254711000006")).toEqual([]);
      expect((await callbackOf(free.CheckoutRequestID)).ResultCode).toBe(0);
    } finally {
      await quick.close();
    }
  });
});

describe("the simulator's endpoints", () => {
  const sms = {
    inbox: [
      {
        messageId: "m1",
        username: "u",
        to: "+254711000007",
        from: null,
        message: "Hello",
        receivedAt: new Date("2026-01-01T10:00:00Z"),
      },
      {
        messageId: "m2",
        username: "u",
        to: "+254799999999",
        from: null,
        message: "Other",
        receivedAt: new Date(),
      },
    ],
  };
  const forms: Record<string, string>[] = [];
  const simulator = () =>
    createSimulatorRoutes({
      ispName: "Tandao Net",
      serviceCode: "*384*1#",
      demoPhone: "+254712345678",
      ussd: (form) => {
        forms.push(Object.fromEntries(form));
        return new Response("CON Tandao Net\n1. My account");
      },
      daraja: fake,
      sms,
      router: {
        items: (menu) =>
          menu === "/ppp/secret" ? [{ ".id": "*1", name: "wanjiku", profile: "home", disabled: "true" }] : [],
      },
      holdIdleMs: 200,
    });

  it("serves the page in English with the phones to pick", async () => {
    const page = await simulator().request("/");
    expect(page.status).toBe(200);
    const text = await page.text();
    expect(text).toContain('<html lang="en">');
    expect(text).toContain("Demo subscriber +254712345678");
  });

  it("posts USSD as Africa's Talking would, and refuses what is not a phone", async () => {
    const app = simulator();
    const answer = await app.request("/api/ussd", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ phone: "254711000007", sessionId: "SIM1", text: "2*1" }),
    });
    expect(await answer.json()).toEqual({ status: 200, response: "CON Tandao Net\n1. My account" });
    expect(forms.at(-1)).toEqual({
      sessionId: "SIM1",
      serviceCode: "*384*1#",
      phoneNumber: "+254711000007",
      networkCode: "63902",
      text: "2*1",
    });
    const bad = await app.request("/api/ussd", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ phone: "<script>", sessionId: "SIM1", text: "" }),
    });
    expect(bad.status).toBe(400);
  });

  it("holds pushes while polled, shows them per phone, and takes the person's decision", async () => {
    const app = simulator();
    const state = await (await app.request("/api/state?phones=%2B254711000007")).json();
    expect(state).toEqual({
      isp: "Tandao Net",
      phones: {
        "+254711000007": {
          prompts: [],
          sms: [{ id: "m1", from: null, text: "Hello", at: "2026-01-01T10:00:00.000Z" }],
        },
      },
      router: {
        secrets: [{ name: "wanjiku", profile: "home", disabled: "yes" }],
        active: [],
        hotspotUsers: [],
        hotspotActive: [],
      },
    });
    expect(fake.holding).toBe(true);
    const accepted = await push("254711000007", 2500);
    const shown = (await (await app.request("/api/state?phones=%2B254711000007")).json()) as {
      phones: Record<string, { prompts: unknown[] }>;
    };
    expect(shown.phones["+254711000007"]?.prompts).toEqual([
      { checkoutRequestId: accepted.CheckoutRequestID, amount: "KES 2,500", account: "TD00001" },
    ]);
    const decide = (body: unknown) =>
      app.request(`/api/prompts/${accepted.CheckoutRequestID}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect((await decide({ decision: "pay", pin: "12" })).status).toBe(400);
    expect((await decide({ decision: "pay", pin: "4321" })).status).toBe(200);
    expect((await decide({ decision: "cancel" })).status).toBe(409);
    expect((await callbackOf(accepted.CheckoutRequestID)).ResultCode).toBe(0);
    // No page polls any more: pushes go back to answering themselves.
    await waitFor(() => !fake.holding, 2_000, 20);
  });
});
