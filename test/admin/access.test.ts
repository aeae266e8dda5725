import { eq } from "drizzle-orm";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { adminTelegramFrom, ensureOwner, startSandboxAdminTelegram } from "../../src/bots/admin/index.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { admins, payments } from "../../src/db/schema/index.ts";
import { billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { silent } from "../ussd/world.ts";
import {
  ADMIN_GROUP,
  type AdminWorld,
  auditRows,
  lastText,
  OTHER_GROUP,
  OWNER,
  shownIn,
  startAdminWorld,
  startFakeTelegram,
  textUpdate,
} from "./world.ts";

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let world: AdminWorld;
const clock = new FakeClock("2026-04-01T06:00:00Z");
const STRANGER = 6_000_001;
const SUPPORT = 6_000_002;
const VIEWER = 6_000_003;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startAdminWorld(ctx);
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

describe("who may use the admin bot", () => {
  it("seeds the configured owner once, however often the app starts", async () => {
    expect(await ensureOwner(ctx, OWNER)).toBe("kept");
    const rows = await database.db.select().from(admins).where(eq(admins.telegramId, OWNER));
    expect(rows.map((r) => r.role)).toEqual(["owner"]);
    expect((await auditRows(database.db, "admin.added", "config")).length).toBe(1);
  });

  it("refuses a stranger, in a private chat and in a group, and audits each attempt with their id", async () => {
    expect(await world.say(STRANGER, "/find Wanjiku")).toBe(200);
    expect(lastText(world.fake, STRANGER)).toMatch(/staff only.*recorded/);
    expect(await world.say(STRANGER, "/pay TD00001 500", ADMIN_GROUP)).toBe(200);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(/staff only/);
    // Chatter in a group is not an attempt.
    const before = shownIn(world.fake, ADMIN_GROUP).length;
    await world.say(STRANGER, "hello all", ADMIN_GROUP);
    // A photo's caption is chatter too, command or not (only a file's caption is a command: /import).
    await world.deliver({
      update_id: 7_000_001,
      message: {
        message_id: 7_000_001,
        date: Math.floor(clock.now().getTime() / 1000),
        chat: { id: ADMIN_GROUP, type: "supergroup", title: "Staff" },
        from: { id: OWNER, is_bot: false, first_name: "Owner" },
        photo: [{ file_id: "p1", file_unique_id: "p1", width: 90, height: 90 }],
        caption: "/stats",
        caption_entities: [{ type: "bot_command", offset: 0, length: 6 }],
      },
    });
    expect(shownIn(world.fake, ADMIN_GROUP)).toHaveLength(before);

    const refused = await auditRows(database.db, "admin.refused", `tg:${STRANGER}`);
    expect(refused.map((r) => [r.actorKind, r.entityId, r.reason, r.details.command])).toEqual([
      ["webhook", String(STRANGER), "not an admin", "find"],
      ["webhook", String(STRANGER), "not an admin", "pay"],
    ]);
    expect(await database.db.select().from(payments)).toHaveLength(0);
  });

  it("a wrong webhook secret is 401 and nothing is handled", async () => {
    const calls = world.fake.calls.length;
    expect(await world.deliver(textUpdate(OWNER, "/help"), "wrong-secret-wrong-secret")).toBe(401);
    expect(world.fake.calls.length).toBe(calls);
  });

  it("the owner adds a support admin and a viewer, audited; /admins lists them", async () => {
    await world.say(OWNER, `/admin_add ${SUPPORT} support Akinyi Otieno`);
    expect(lastText(world.fake, OWNER)).toMatch(`Added ${SUPPORT} as support (Akinyi Otieno)`);
    await world.say(OWNER, `/admin_add ${VIEWER} viewer`);
    const added = await auditRows(database.db, "admin.added", `tg:${OWNER}`);
    expect(added.map((r) => [r.actorKind, r.entityId, r.details.role])).toEqual([
      ["admin", String(SUPPORT), "support"],
      ["admin", String(VIEWER), "viewer"],
    ]);
    await world.say(OWNER, "/admins");
    expect(lastText(world.fake, OWNER)).toMatch(new RegExp(`${SUPPORT} support — Akinyi Otieno`));

    // The new admin is served.
    await world.say(SUPPORT, "/help");
    const help = lastText(world.fake, SUPPORT);
    expect(help).toMatch(/You are support/);
    expect(help).toMatch(/\/pay/);
    expect(help).toMatch(/\/resume/);
    expect(help).not.toMatch(/\/suspend/);
    expect(help).not.toMatch(/\/admin_add/);
  });

  it("a viewer cannot /pay: refused, audited, nothing asked", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const { customer } = await createCustomerWithSubscription(
      ctx,
      { kind: "system", id: "test" },
      {
        name: "Viewer Test",
        phone: "+254711000111",
        planId: plan.id,
      },
    );
    await world.say(VIEWER, `/pay ${customer.accountNumber} 1500`);
    expect(lastText(world.fake, VIEWER)).toMatch(/Your role \(viewer\) may not use \/pay/);
    expect(shownIn(world.fake, VIEWER).some((c) => JSON.stringify(c.payload).includes("Confirm"))).toBe(
      false,
    );
    const refused = await auditRows(database.db, "admin.refused", `tg:${VIEWER}`);
    expect(refused.map((r) => [r.actorKind, r.entityId, r.reason])).toEqual([
      ["admin", "pay", "role viewer"],
    ]);
    await world.say(VIEWER, "/help");
    expect(lastText(world.fake, VIEWER)).not.toMatch(/\/pay/);
    // Reading is allowed.
    await world.say(VIEWER, `/sub ${customer.accountNumber}`);
    expect(lastText(world.fake, VIEWER)).toMatch(/Viewer Test/);
  });

  it("support cannot add admins; an admin outside an admin chat is refused", async () => {
    await world.say(SUPPORT, `/admin_add ${STRANGER} owner`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/may not use \/admin_add/);
    expect(await database.db.select().from(admins).where(eq(admins.telegramId, STRANGER))).toHaveLength(0);

    await world.say(SUPPORT, "/help", OTHER_GROUP);
    expect(lastText(world.fake, OTHER_GROUP)).toMatch(/private chat with me or in the admin group/);
    await world.say(SUPPORT, "/help@tandao_admin_bot", ADMIN_GROUP);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(/You are support/);
    // A command for another bot in the group is not ours to answer (or to audit).
    const shown = shownIn(world.fake, ADMIN_GROUP).length;
    await world.say(STRANGER, "/help@some_other_bot", ADMIN_GROUP);
    expect(shownIn(world.fake, ADMIN_GROUP)).toHaveLength(shown);
  });

  it("bad /admin_add arguments are answered and change nothing", async () => {
    const count = async () => (await database.db.select().from(admins)).length;
    const before = await count();
    await world.say(OWNER, "/admin_add");
    expect(lastText(world.fake, OWNER)).toMatch(/Telegram user id/);
    await world.say(OWNER, "/admin_add abc support");
    expect(lastText(world.fake, OWNER)).toMatch(/"abc" is not a Telegram user id/);
    await world.say(OWNER, `/admin_add ${STRANGER} superuser`);
    expect(lastText(world.fake, OWNER)).toMatch(/"superuser" is not a role: owner, admin, support or viewer/);
    expect(await count()).toBe(before);
  });

  it("the owner removes an admin (not themselves, not the configured owner); the removed one is refused", async () => {
    await world.say(OWNER, `/admin_remove ${OWNER}`);
    expect(lastText(world.fake, OWNER)).toMatch(/cannot remove yourself/);
    await world.say(OWNER, `/admin_add ${OWNER} viewer`);
    expect(lastText(world.fake, OWNER)).toMatch(/comes from the configuration \(TELEGRAM_OWNER_ID\)/);
    await world.say(OWNER, `/admin_remove ${VIEWER}`);
    expect(lastText(world.fake, OWNER)).toMatch(`Removed ${VIEWER} (viewer)`);
    expect((await auditRows(database.db, "admin.removed", `tg:${OWNER}`)).map((r) => r.entityId)).toEqual([
      String(VIEWER),
    ]);
    await world.say(VIEWER, "/help");
    expect(lastText(world.fake, VIEWER)).toMatch(/staff only/);
    await world.say(OWNER, `/admin_remove ${VIEWER}`);
    expect(lastText(world.fake, OWNER)).toMatch(`${VIEWER} is not an admin`);
  });
});

describe("adminTelegramFrom, as the app wires it", () => {
  it("seeds the owner, mounts the webhook and its own worker sends the answer", async () => {
    const fake = await startFakeTelegram({ token: "888000:ADMIN-wired", username: "tandao_admin_bot" });
    const second = 5_000_777;
    const admin = await adminTelegramFrom({
      ctx,
      logger: silent,
      token: fake.token,
      secretToken: "wired-admin-secret-0123456789",
      ownerTelegramId: second,
      apiRoot: fake.apiRoot,
    });
    try {
      const app = new Hono();
      app.route("/hooks/tg-admin", admin.routes);
      const response = await app.request("/hooks/tg-admin", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-telegram-bot-api-secret-token": "wired-admin-secret-0123456789",
        },
        body: JSON.stringify(textUpdate(second, "/help")),
      });
      expect(response.status).toBe(200);
      await fake.waitFor((calls) =>
        calls.some(
          (c) =>
            c.method === "sendMessage" &&
            c.payload.chat_id === second &&
            /You are owner/.test(String(c.payload.text)),
        ),
      );
    } finally {
      await admin.stop();
      await fake.close();
    }
  });
});

describe("the admin bot sandbox", () => {
  it("long-polls a fake of its own; a curl-style POST talks to it as the owner", async () => {
    const owner = 5_000_888;
    const sandbox = await startSandboxAdminTelegram({ ctx, logger: silent, ownerTelegramId: owner });
    try {
      const queued = await fetch(`${sandbox.fake.apiRoot}/sandbox/updates`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user: owner, text: "/help" }),
      });
      expect(queued.status).toBe(200);
      await sandbox.fake.waitFor((calls) =>
        calls.some(
          (c) =>
            c.method === "sendMessage" &&
            c.payload.chat_id === owner &&
            /You are owner/.test(String(c.payload.text)),
        ),
      );
    } finally {
      await sandbox.stop();
    }
  });

  it("shows each message's buttons, and a curl-style press confirms a /pay (by its text or its data)", async () => {
    const owner = 5_000_889;
    const sandbox = await startSandboxAdminTelegram({ ctx, logger: silent, ownerTelegramId: owner });
    const api = sandbox.fake.apiRoot;
    const post = (body: unknown) =>
      fetch(`${api}/sandbox/updates`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    type Shown = { message_id: number; text: string; buttons: { text: string; callback_data: string }[] };
    const chat = async () =>
      ((await (await fetch(`${api}/sandbox/chats/${owner}`)).json()) as { result: Shown[] }).result;
    /** Until the bot has sent (or edited a message into) a text matching `pattern` in the owner's chat. */
    const shows = (pattern: RegExp) =>
      sandbox.fake.waitFor((calls) =>
        calls.some(
          (c) =>
            (c.method === "sendMessage" || c.method === "editMessageText") &&
            c.payload.chat_id === owner &&
            pattern.test(String(c.payload.text)),
        ),
      );
    try {
      const plan = await createPlan(database.db, { priceCents: 10_000 });
      const { customer } = await createCustomerWithSubscription(
        ctx,
        { kind: "system", id: "test" },
        { name: "Sandbox Payer", phone: "+254711000222", planId: plan.id },
      );
      const account = customer.accountNumber;
      expect((await post({ user: owner, text: `/pay ${account} 100` })).status).toBe(200);
      await shows(/record a cash payment of KES 100/);
      const question = (await chat()).at(-1)!;
      expect(question.buttons.map((b) => b.text)).toEqual(["✅ Confirm", "Cancel"]);
      expect(question.buttons.every((b) => b.callback_data.length > 0)).toBe(true);

      const recorded = () => database.db.select().from(payments).where(eq(payments.customerId, customer.id));
      expect((await post({ user: owner, press: "Confirm" })).status).toBe(200);
      await shows(new RegExp(`Recorded KES 100 cash for ${account}`));
      expect((await recorded()).map((p) => [p.method, p.amountCents])).toEqual([["cash", 10_000]]);
      const answered = (await chat()).find((m) => m.message_id === question.message_id)!;
      expect(answered.buttons).toEqual([]);
      // The question no longer has the button: a second press is refused, and nothing more is recorded.
      const again = await post({ user: owner, press: "✅ Confirm" });
      expect(again.status).toBe(400);
      expect(((await again.json()) as { description: string }).description).toContain(
        `no message in chat ${owner} has a button "✅ Confirm"`,
      );

      // By callback data: the Cancel of a second question.
      await post({ user: owner, text: `/pay ${account} 50` });
      await shows(/record a cash payment of KES 50\b/);
      const cancel = (await chat()).at(-1)!.buttons.find((b) => b.text === "Cancel")!;
      expect((await post({ user: owner, button: cancel.callback_data })).status).toBe(200);
      await shows(/^Cancelled: record a cash payment of KES 50\b/);
      expect(await recorded()).toHaveLength(1);
    } finally {
      await sandbox.stop();
    }
  });
});
