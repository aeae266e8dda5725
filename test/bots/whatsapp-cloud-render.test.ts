import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatView } from "../../src/bots/chat-menu.ts";
import { ChatSendError } from "../../src/bots/chat-sender.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { createGraphClient, GraphApiError } from "../../src/bots/whatsapp-cloud/graph.ts";
import { renderView } from "../../src/bots/whatsapp-cloud/render.ts";
import { createCloudSender } from "../../src/bots/whatsapp-cloud/sender.ts";

let fake: FakeWhatsApp;
beforeAll(async () => {
  fake = await startFakeWhatsApp();
});
afterAll(async () => {
  await fake?.close();
});

const view = (labels: string[], extra: Partial<ChatView> = {}): ChatView => ({
  lines: ["Pick one"],
  options: labels.map((label, i) => ({ key: String(i + 1), label })),
  end: false,
  step: 7,
  screen: "test",
  language: "en",
  ...extra,
});

const client = () =>
  createGraphClient({ baseUrl: fake.graphUrl, phoneNumberId: fake.phoneNumberId, token: fake.token });

describe("rendering a menu view for WhatsApp", () => {
  it("uses buttons up to 3, a list up to 10, numbered text beyond; each is accepted by the fake", async () => {
    const three = renderView(view(["One", "Two", "Three"]));
    expect(three).toMatchObject({ type: "interactive", interactive: { type: "button" } });
    const ten = renderView(view(Array.from({ length: 10 }, (_, i) => `Plan ${i + 1}`)));
    expect(ten).toMatchObject({ type: "interactive", interactive: { type: "list" } });
    const eleven = renderView(view(Array.from({ length: 11 }, (_, i) => `Plan ${i + 1}`)));
    expect(eleven).toMatchObject({ type: "text" });
    expect(eleven.type === "text" && eleven.text.body.split("\n")).toEqual([
      "Pick one",
      "",
      ...Array.from({ length: 11 }, (_, i) => `${i + 1}. Plan ${i + 1}`),
    ]);
    fake.userWrote("254700000001");
    for (const message of [three, ten, eleven])
      await expect(client().send("254700000001", message)).resolves.toMatch(/^wamid\./);
  });

  it("falls back to numbered text when a title does not fit, and shows an ended view as plain text", () => {
    // "1. " + 18 characters = 21: one over the button limit.
    const long = renderView(view(["Eighteen letters!!", "Two"]));
    expect(long).toEqual({ type: "text", text: { body: "Pick one\n\n1. Eighteen letters!!\n2. Two" } });
    const longRow = renderView(view(["A row title far too long to fit", "2", "3", "4"]));
    expect(longRow.type).toBe("text");
    expect(renderView(view(["One"], { end: true }))).toEqual({ type: "text", text: { body: "Pick one" } });
  });
});

describe("the Cloud API fake", () => {
  it("refuses a wrong token with 401 and Meta's code 190", async () => {
    const wrong = createGraphClient({
      baseUrl: fake.graphUrl,
      phoneNumberId: fake.phoneNumberId,
      token: "EAAG-wrong",
    });
    const error = await wrong
      .send("254700000001", { type: "text", text: { body: "hi" } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GraphApiError);
    expect(error).toMatchObject({ status: 401, code: 190 });
    const raw = await fetch(`${fake.graphUrl}/${fake.phoneNumberId}/messages`, {
      method: "POST",
      body: "{}",
    });
    expect(raw.status).toBe(401);
    expect(await raw.json()).toMatchObject({ error: { type: "OAuthException", code: 190 } });
  });

  it("refuses a reply-button title over 20 characters with 131009 and records nothing", async () => {
    const before = fake.sent.length;
    const error = await client()
      .send("254700000001", {
        type: "interactive",
        interactive: {
          type: "button",
          body: { text: "Pick" },
          action: { buttons: [{ type: "reply", reply: { id: "m:1:1", title: "Twenty-one characters" } }] },
        },
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      status: 400,
      code: 131009,
      message: "(#131009) Parameter value is not valid",
    });
    expect(fake.sent.length).toBe(before);
  });
});

describe("Graph API failures the delivery worker is told of", () => {
  const failingWith = (error: unknown) =>
    createCloudSender({
      send: () => Promise.reject(error),
    });
  const failureOf = (error: unknown) =>
    failingWith(error)
      .send("254700000001", { kind: "text", text: "hi" })
      .then(
        () => null,
        (e: unknown) => (e instanceof ChatSendError ? e.failure : e),
      );

  it("takes an HTTP 429 (too many requests) as 'try again later', not as a refusal of the message", async () => {
    expect(await failureOf(new GraphApiError(429, null, "Graph API answered 429"))).toBe("retry");
  });

  it("passes on Meta's Retry-After for a rate limit, whether told by HTTP 429 or by its code", async () => {
    const waitOf = (error: GraphApiError) =>
      failingWith(error)
        .send("254700000001", { kind: "text", text: "hi" })
        .catch((e: unknown) => e);
    expect(await waitOf(new GraphApiError(429, 130429, "(#130429) Rate limit hit", 30))).toMatchObject({
      failure: "retry",
      retryAfterSeconds: 30,
    });
    // The pair rate limit (one person messaged too often) may come as a 400.
    expect(await waitOf(new GraphApiError(400, 131056, "(#131056) Pair rate limit hit", 6))).toMatchObject({
      failure: "retry",
      retryAfterSeconds: 6,
    });
    // A server error's Retry-After is not a rate limit: the worker's back-off counts the attempt.
    expect(await waitOf(new GraphApiError(503, null, "Graph API answered 503", 30))).not.toHaveProperty(
      "retryAfterSeconds",
      30,
    );
  });

  it("waits out a rate limit told without Retry-After (a 400 with Meta's code) a minute, costing no attempt", async () => {
    const error = await failingWith(new GraphApiError(400, 130429, "(#130429) Rate limit hit"))
      .send("254700000001", { kind: "text", text: "hi" })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ failure: "retry", retryAfterSeconds: 60 });
  });

  it("takes a refused access token (expired, revoked) as the channel unavailable, not the message's failure", async () => {
    expect(await failureOf(new GraphApiError(401, 190, "Error validating access token"))).toBe("unavailable");
    expect(await failureOf(new GraphApiError(400, 190, "Error validating access token"))).toBe("unavailable");
  });

  it("takes an HTTP 408 (request timeout) as 'try again later'; a bad parameter stays a refusal", async () => {
    expect(await failureOf(new GraphApiError(408, null, "Graph API answered 408"))).toBe("retry");
    expect(await failureOf(new GraphApiError(400, 131009, "(#131009) Parameter value is not valid"))).toBe(
      "refused",
    );
  });
});
