import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { adminDialogs, auditLog, chatInbox, messageOutbox, routers } from "../../src/db/schema/index.ts";
import { box } from "../network/support.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  ADMIN_GROUP,
  type AdminWorld,
  auditRows,
  button,
  lastMenuIn,
  lastText,
  OWNER,
  pressUpdate,
  shownIn,
  startAdminWorld,
  textUpdate,
} from "./world.ts";

/**
 * `/router_add`, `/router_password` and `/router_edit` through grammY and the fake Bot API over
 * HTTP. The world is test/admin/world.ts's with the secret box given to the bot (the `box` dep).
 */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let world: AdminWorld;
const clock = new FakeClock(new Date());
const SUPPORT = 6_300_002;
const ADMIN = 6_300_001;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startAdminWorld(ctx, { box, storeUpdates: true });
  await world.say(OWNER, `/admin_add ${SUPPORT} support Sam`);
  await world.say(OWNER, `/admin_add ${ADMIN} admin Ann`);
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

/** Says `text`, then expects the bot's newest answer to match `answer`. */
async function step(user: number, text: string, answer: RegExp) {
  await world.say(user, text);
  expect(lastText(world.fake, user)).toMatch(answer);
}

async function dialogRows(user: number) {
  return database.db.select().from(adminDialogs).where(eq(adminDialogs.adminTelegramId, user));
}

/** Everything the database holds that a password typed in the chat could have reached. */
async function storedText(): Promise<string> {
  const [inbox, outbox, audits, dialogs, routerRows] = await Promise.all([
    database.db.select().from(chatInbox),
    database.db.select().from(messageOutbox),
    database.db.select().from(auditLog),
    database.db.select().from(adminDialogs),
    database.db.select().from(routers),
  ]);
  return JSON.stringify([inbox, outbox, audits, dialogs, routerRows]);
}

describe("/router_add", () => {
  it("is refused to support and viewer roles, audited", async () => {
    await world.say(SUPPORT, "/router_add");
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/router_add/);
    const refused = await auditRows(database.db, "admin.refused", `tg:${SUPPORT}`);
    expect(refused.some((r) => r.entityId === "router_add")).toBe(true);
    expect(await dialogRows(SUPPORT)).toHaveLength(0);
  });

  it("asks each answer in turn, re-asks a wrong one, confirms, then takes the password and deletes it", async () => {
    await step(OWNER, "/router_add", /New router \(1\/5\): its name/);
    await step(OWNER, "bad name!", /cannot be a router name/);
    await step(OWNER, "12345", /cannot be a router name/);
    await step(OWNER, "Kibera-9", /\(2\/5\) Kibera-9's address/);
    await step(OWNER, "not a host!", /is not a host name or IP address/);
    await step(OWNER, "10.20.30.40", /\(3\/5\) The API port\?/);
    await step(OWNER, "99999", /is not a port/);
    await step(OWNER, "ok", /\(4\/5\) Use API-SSL \(TLS\)\?/);
    await step(OWNER, "maybe", /type yes or no/);
    await step(OWNER, "yes", /\(5\/5\) The RouterOS user/);
    const [dialog] = await dialogRows(OWNER);
    expect(dialog).toMatchObject({ kind: "router", step: "username" });
    expect(dialog!.answers).toEqual({
      mode: "add",
      name: "Kibera-9",
      host: "10.20.30.40",
      port: null,
      tls: true,
    });

    await step(OWNER, "tandao api", /without spaces/);
    await world.say(OWNER, "tandao");
    expect(lastText(world.fake, OWNER)).toMatch(
      /Add router Kibera-9 at 10\.20\.30\.40:8729 \(API-SSL\), user tandao\? Its password is asked next\./,
    );
    expect(await dialogRows(OWNER)).toHaveLength(0);
    // Nothing is added before the password.
    expect(await database.db.select().from(routers).where(eq(routers.name, "Kibera-9"))).toHaveLength(0);

    await world.press(OWNER, "Confirm");
    const shown = shownIn(world.fake, OWNER).map((c) => String(c.payload.text));
    expect(shown.at(-2)).toMatch(/Send the password of tandao on Kibera-9 now.*will be deleted once read/);
    expect(shown.at(-1)).toMatch(
      /Kibera-9 at 10\.20\.30\.40:8729 \(API-SSL\), user tandao: confirmed, waiting/,
    );
    const [waiting] = await dialogRows(OWNER);
    expect(waiting).toMatchObject({ kind: "router", step: "password" });

    // A second tap does nothing.
    const before = shownIn(world.fake, OWNER).length;
    const message = lastMenuIn(world.fake, OWNER);
    await world.deliver(
      pressUpdate(world.fake, OWNER, OWNER, message.messageId!, button(message, "Confirm")),
    );
    expect(shownIn(world.fake, OWNER)).toHaveLength(before);

    const password = "s3cret Pa$$word-xyz";
    const update = textUpdate(OWNER, password);
    await world.deliver(update);
    const deletions = world.fake.callsOf("deleteMessage");
    expect(deletions.at(-1)?.payload).toEqual({ chat_id: OWNER, message_id: update.message.message_id });
    expect(lastText(world.fake, OWNER)).toMatch(
      /✅ Router Kibera-9 at 10\.20\.30\.40:8729 \(API-SSL\), user tandao added; your message with the password was deleted/,
    );

    const [router] = await database.db.select().from(routers).where(eq(routers.name, "Kibera-9"));
    expect(router).toMatchObject({ host: "10.20.30.40", port: 8729, tls: true, username: "tandao" });
    expect(router!.passwordEncrypted).toMatch(/^v1:/);
    expect(box.open(router!.passwordEncrypted)).toBe(password);

    const [added] = await auditRows(database.db, "router.added", `tg:${OWNER}`);
    expect(added).toMatchObject({ entity: "router", entityId: String(router!.id) });
    expect(added!.details).toMatchObject({ name: "Kibera-9", host: "10.20.30.40", port: 8729, tls: true });

    // The password was never echoed, and is nowhere in the database in the clear.
    expect(JSON.stringify(world.fake.calls)).not.toContain(password);
    expect(await storedText()).not.toContain(password);
    // The webhook's stored copy of the update was kept, its text replaced.
    expect(JSON.stringify(await database.db.select().from(chatInbox))).toContain("(password removed)");
    expect(await dialogRows(OWNER)).toHaveLength(0);
  });

  it("takes the default port without TLS, and a password that starts with a slash", async () => {
    await world.say(ADMIN, "/router_add");
    for (const answer of ["Mathare-1", "router.example.net", "ok", "no", "api"])
      await world.say(ADMIN, answer);
    await world.press(ADMIN, "Confirm");
    const update = textUpdate(ADMIN, "/not-a-command 42");
    await world.deliver(update);
    expect(world.fake.callsOf("deleteMessage").at(-1)?.payload).toEqual({
      chat_id: ADMIN,
      message_id: update.message.message_id,
    });
    const [router] = await database.db.select().from(routers).where(eq(routers.name, "Mathare-1"));
    expect(router).toMatchObject({ host: "router.example.net", port: 8728, tls: false, username: "api" });
    expect(box.open(router!.passwordEncrypted)).toBe("/not-a-command 42");
    expect(await storedText()).not.toContain("/not-a-command 42");
    expect(await auditRows(database.db, "router.added", `tg:${ADMIN}`)).toHaveLength(1);
  });

  it("refuses a name already taken, and stops on /cancel_dialog at the password step", async () => {
    await world.say(OWNER, "/router_add");
    await step(OWNER, "kibera-9", /A router named Kibera-9 exists already/);
    await world.say(OWNER, "Kibera-10");
    for (const answer of ["10.0.0.10", "8730", "no", "tandao"]) await world.say(OWNER, answer);
    await world.press(OWNER, "Confirm");
    await step(OWNER, "/cancel_dialog", /Stopped/);
    expect(await dialogRows(OWNER)).toHaveLength(0);
    await step(OWNER, "a-password-too-late", /^Type \/help/);
    expect(await database.db.select().from(routers).where(eq(routers.name, "Kibera-10"))).toHaveLength(0);
  });

  it("is used in a private chat only", async () => {
    await world.say(OWNER, "/router_add", ADMIN_GROUP);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(/asks for a password: use it in a private chat/);
    expect(await dialogRows(OWNER)).toHaveLength(0);
  });
});

describe("/router_password", () => {
  it("asks for the new password, seals it, deletes the message and audits", async () => {
    await step(OWNER, "/router_password nowhere", /No router "nowhere"/);
    await step(OWNER, "/router_password kibera-9", /Send the new password of tandao on Kibera-9 now/);
    const update = textUpdate(OWNER, "n3w-password");
    await world.deliver(update);
    expect(world.fake.callsOf("deleteMessage").at(-1)?.payload).toEqual({
      chat_id: OWNER,
      message_id: update.message.message_id,
    });
    expect(lastText(world.fake, OWNER)).toMatch(/✅ New password of Kibera-9 saved/);
    const [router] = await database.db.select().from(routers).where(eq(routers.name, "Kibera-9"));
    expect(box.open(router!.passwordEncrypted)).toBe("n3w-password");
    expect(await auditRows(database.db, "router.password_changed", `tg:${OWNER}`)).toHaveLength(1);
    expect(JSON.stringify(world.fake.calls)).not.toContain("n3w-password");
    expect(await storedText()).not.toContain("n3w-password");
  });

  it("is refused to support", async () => {
    await step(SUPPORT, "/router_password Kibera-9", /may not use \/router_password/);
  });

  /**
   * `user` sends `password` as the answer to Kibera-9's password question: the message is deleted,
   * nowhere stored, the router's password unchanged, and the bot answers `answer`.
   */
  async function expectDroppedPassword(user: number, password: string, answer: string) {
    const kibera = async () =>
      (await database.db.select().from(routers).where(eq(routers.name, "Kibera-9")))[0]!.passwordEncrypted;
    const before = await kibera();
    const sent = textUpdate(user, password);
    await world.deliver(sent);
    expect(world.fake.callsOf("deleteMessage").at(-1)?.payload).toEqual({
      chat_id: user,
      message_id: sent.message.message_id,
    });
    expect(lastText(world.fake, user)).toBe(answer);
    expect(await kibera()).toBe(before);
    expect(await storedText()).not.toContain(password);
  }

  it("deletes and does not use a password sent after the question expired", async () => {
    await step(OWNER, "/router_password Kibera-9", /Send the new password of tandao on Kibera-9 now/);
    clock.advance(11 * 60_000);
    await expectDroppedPassword(
      OWNER,
      "L4te-password",
      "The password question had ended (after 10 minutes); your message was deleted and not used. Start again: /router_password Kibera-9",
    );
    // Only that message: the next one is not taken for a password.
    await step(OWNER, "hello", /\/help/);
  });

  it("deletes and does not use the password of an admin whose role was taken away since the question", async () => {
    await step(ADMIN, "/router_password Kibera-9", /Send the new password of tandao on Kibera-9 now/);
    await world.say(OWNER, `/admin_add ${ADMIN} viewer`);
    await expectDroppedPassword(
      ADMIN,
      "dem0ted-password",
      "Your role (viewer) may not use /router_password any more; your message was deleted and not used.",
    );
    await world.say(OWNER, `/admin_add ${ADMIN} admin Ann`);
  });
});

describe("/router_edit", () => {
  it("changes host, port, user and TLS, validated and audited", async () => {
    await step(OWNER, "/router_edit", /Usage: \/router_edit/);
    await step(OWNER, "/router_edit nowhere host 10.0.0.1", /No router "nowhere"/);
    await step(OWNER, "/router_edit Mathare-1 colour blue", /"colour" cannot be changed here/);
    const typed = textUpdate(OWNER, "/router_edit Mathare-1 password Typ3d-In-Clear");
    await world.deliver(typed);
    expect(lastText(world.fake, OWNER)).toBe(
      "A password is never typed after a command; your message was deleted and not used: /router_password Mathare-1",
    );
    expect(world.fake.callsOf("deleteMessage").at(-1)?.payload).toEqual({
      chat_id: OWNER,
      message_id: typed.message.message_id,
    });
    expect(await storedText()).not.toContain("Typ3d-In-Clear");
    await step(OWNER, "/router_edit Mathare-1 host bad_host!", /not a host name/);
    await step(
      OWNER,
      "/router_edit Mathare-1 host 10.1.1.1",
      /✅ Router Mathare-1 at 10\.1\.1\.1:8728, user api/,
    );
    await step(OWNER, "/router_edit Mathare-1 port 0", /not a port/);
    await step(OWNER, "/router_edit Mathare-1 port 8740", /10\.1\.1\.1:8740/);
    await step(OWNER, "/router_edit Mathare-1 user tandao", /user tandao/);
    await step(OWNER, "/router_edit Mathare-1 tls perhaps", /TLS is yes or no/);
    await step(
      OWNER,
      "/router_edit Mathare-1 tls yes",
      /10\.1\.1\.1:8740 \(API-SSL\).*certificate must be confirmed/,
    );
    await step(OWNER, "/router_edit Mathare-1 port 8728", /8728/);
    // TLS off from the API port's default: the port follows.
    await step(OWNER, "/router_edit Mathare-1 tls no", /10\.1\.1\.1:8728, user tandao\.$/);
    await step(OWNER, "/router_edit Mathare-1 tls no", /already so: nothing changed/);
    const [router] = await database.db.select().from(routers).where(eq(routers.name, "Mathare-1"));
    expect(router).toMatchObject({ host: "10.1.1.1", port: 8728, tls: false, username: "tandao" });
    const edits = await auditRows(database.db, "router.edited", `tg:${OWNER}`);
    expect(edits).toHaveLength(6);
    expect(
      edits.find((e) => (e.details as { changed: { host?: string } }).changed.host)?.details,
    ).toMatchObject({
      changed: { host: "10.1.1.1" },
      from: { host: "router.example.net" },
    });
  });

  it("is refused to support", async () => {
    await step(SUPPORT, "/router_edit Mathare-1 host 10.9.9.9", /may not use \/router_edit/);
    const [router] = await database.db.select().from(routers).where(eq(routers.name, "Mathare-1"));
    expect(router!.host).toBe("10.1.1.1");
  });
});
