import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.ts";
import { DarajaClient, type DarajaOptions, type StkPushRequest } from "../../src/payments/mpesa/daraja.ts";
import { FakeDaraja } from "../../src/payments/mpesa/fake.ts";
import { eventually } from "./dispatch-support.ts";
import { freshPhone } from "./harness.ts";

/** How the real client reads Daraja's failures, over HTTP against the fake. */

let fake: FakeDaraja;
beforeAll(async () => {
  fake = await FakeDaraja.start({ defaultDelivery: { outcome: "success", lost: true } });
});
afterAll(async () => {
  await fake?.close();
});

const client = (overrides: Partial<DarajaOptions> = {}) =>
  new DarajaClient({
    baseUrl: fake.url,
    consumerKey: fake.consumerKey,
    consumerSecret: fake.consumerSecret,
    shortcode: fake.shortcode,
    passkey: fake.passkey,
    clock: systemClock,
    timeoutMs: 300,
    ...overrides,
  });
const push = (msisdn = freshPhone().slice(1)): StkPushRequest => ({
  msisdn,
  amountShillings: 10,
  accountReference: "TD00001",
  description: "Internet",
  // Never called: the fake's deliveries here are all lost.
  callbackUrl: "http://127.0.0.1:9/hooks/stk",
});
const failure = (p: Promise<unknown>) => p.then(() => null).catch((e: unknown) => e);

describe("Daraja failures, as the client classifies them", () => {
  it("a wrong passkey is a configuration error, not worth retrying", async () => {
    const error = await failure(client({ passkey: "not-the-passkey" }).stkPush(push()));
    expect(error).toMatchObject({
      status: 500,
      errorCode: "500.001.1001",
      errorMessage: "Wrong credentials",
      kind: "configuration",
      retryable: false,
    });
  });

  it("a wrong consumer secret (no token) is a configuration error too", async () => {
    const error = await failure(client({ consumerSecret: "nope" }).stkPush(push()));
    expect(error).toMatchObject({ errorCode: "400.008.01", kind: "configuration", retryable: false });
  });

  it("a second push while the first prompt is open: the subscriber is busy until it closes", async () => {
    const msisdn = freshPhone().slice(1);
    fake.queue({ outcome: "cancelled", delayMs: 200, lost: true });
    await client().stkPush(push(msisdn));
    const error = await failure(client().stkPush(push(msisdn)));
    expect(error).toMatchObject({
      status: 500,
      errorCode: "500.001.1001",
      errorMessage: expect.stringMatching(/^Unable to lock subscriber/),
      kind: "busy",
      retryable: true,
      stillProcessing: false,
    });
    await eventually(() => (fake.promptOpen(msisdn) ? undefined : true));
    expect((await client().stkPush(push(msisdn))).ResponseCode).toBe("0");
    expect(fake.pushes.filter((p) => p.msisdn === msisdn)).toHaveLength(2);
  });

  it.each(["reset", "unavailable", "hang"] as const)(
    "an accepted push whose answer is lost (%s) is uncertain, not a refusal",
    async (answer) => {
      const msisdn = freshPhone().slice(1);
      fake.queue({ outcome: "success", lost: true, answer });
      const error = await failure(client().stkPush(push(msisdn)));
      expect(error).toMatchObject({ kind: "uncertain", retryable: true });
      expect(fake.pushes.filter((p) => p.msisdn === msisdn)).toHaveLength(1);
    },
  );

  it("a refusal with Daraja's own error body (spike arrest) is transient and certain", async () => {
    fake.failNextPush(503, "500.003.02", "Spike arrest violation");
    const error = await failure(client().stkPush(push()));
    expect(error).toMatchObject({ errorCode: "500.003.02", kind: "transient", uncertain: false });
  });

  it("a connection that was never made is transient and certain: nothing reached Daraja", async () => {
    const down = await FakeDaraja.start();
    const url = down.url;
    await down.close();
    const error = await failure(client({ baseUrl: url }).stkPush(push()));
    expect(error).toMatchObject({ errorCode: "network", kind: "transient", uncertain: false });
  });
});
