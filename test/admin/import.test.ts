import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminBackgroundFinished } from "../../src/bots/admin/index.ts";
import type { FakeDocument } from "../../src/bots/telegram/fake-api.ts";
import type { UploadedFile } from "../../src/bots/telegram/fake-uploads.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers, routers, subscriptions } from "../../src/db/schema/index.ts";
import { billingContext, count, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  ADMIN_GROUP,
  type AdminWorld,
  auditRows,
  buttonsOf,
  documentUpdate,
  lastMenuIn,
  lastText,
  lastToast,
  OWNER,
  shownIn,
  startAdminWorld,
} from "./world.ts";

/**
 * Customers from a CSV file sent to the admin chat: the bot fetches it from (the fake) Telegram
 * after answering, reports the dry run row by row, and imports the good rows once confirmed.
 */

let database: Database;
let world: AdminWorld;
const clock = new FakeClock("2026-06-01T06:00:00Z");
const SUPPORT = 6_800_001;
const VIEWER = 6_800_002;
const HEADER = "account,name,phone,plan,status,expires,router,username,balance";

const FILE = [
  HEADER,
  "AC001,Amina Wekesa,0712000001,home-10,active,2026-06-30,kibera-1,,-1500.50", // 2
  "AC002,Bad Phone,12345,home-10,active,2026-06-30,,,0", // 3
  "AC003,Brian Otieno,+254712000002,home-20,suspended,2026-05-31,,brian.o,0", // 4
  "AC004,No Plan,0712000004,gold,active,2026-06-30,,,0", // 5
  "AC005,Chebet Kirui,254712000003,home-10,pending,2026-07-15,,,250", // 6
  "AC006,Bad Date,0712000006,home-10,active,2026-02-30,,,0", // 7
].join("\n");

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  world = await startAdminWorld(ctx);
  await createPlan(database.db, { code: "home-10", name: "Home 10", priceCents: 250_000 });
  await createPlan(database.db, { code: "home-20", name: "Home 20", priceCents: 400_000 });
  await database.db
    .insert(routers)
    .values({ name: "kibera-1", host: "10.0.0.1", username: "api", passwordEncrypted: "x" });
  await world.say(OWNER, `/admin_add ${SUPPORT} support Sam`);
  await world.say(OWNER, `/admin_add ${VIEWER} viewer Vic`);
});
afterAll(async () => {
  await adminBackgroundFinished(database?.db);
  await world?.close();
  await database?.close();
});

/** Sends a file to the chat, then lets the work after the answer end and sends what it queued. */
async function send(user: number, filename: string, bytes: string, options: { mimeType?: string } = {}) {
  const document = world.fake.addDocument({ filename, bytes, mimeType: options.mimeType ?? "text/csv" });
  return sendDocument(user, document, "/import");
}

async function sendDocument(user: number, document: FakeDocument, caption?: string) {
  await world.deliver(documentUpdate(user, document, caption));
  await afterBackground();
}

async function afterBackground() {
  await adminBackgroundFinished(database.db);
  await world.sendQueued();
}

const texts = (chat: number, from: number) =>
  shownIn(world.fake, chat)
    .filter((c) => world.fake.calls.indexOf(c) >= from)
    .map((c) => String(c.payload.text));

const customerCount = () => count(database.db, sql`select count(*)::int as n from customers`);
const accounts = async () =>
  (await database.db.select({ a: customers.accountNumber }).from(customers)).map((c) => c.a).sort();

describe("a customers CSV sent to the admin chat", () => {
  it("reports the dry run with each bad row by line and reason, then imports the good rows once confirmed", async () => {
    const from = world.fake.calls.length;
    await send(OWNER, "customers.csv", FILE);
    expect(world.fake.callsOf("getFile").length).toBe(1);
    const shown = texts(OWNER, from);
    expect(shown[0]).toMatch(/customers\.csv: checking it row by row/);
    const report = shown.find((t) => t.includes("dry run"))!;
    expect(report).toMatch(/6 rows — 3 new, 0 already here \(unchanged\), 3 refused/);
    expect(report).toContain('line 3 AC002: refused: bad phone "12345"');
    expect(report).toContain('line 5 AC004: refused: unknown plan "gold"');
    expect(report).toContain('line 7 AC006: refused: bad date "2026-02-30"');
    expect(report).not.toContain("line 2");
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(/^Import 3 customers from customers\.csv\?/);
    // The button says what it does: no "Confirm" to press without reading the question.
    expect(buttonsOf(question).map((b) => b.text)).toEqual(["✅ Import 3 customers", "Cancel"]);
    expect(await customerCount()).toBe(0);

    await world.press(OWNER, "Import 3 customers");
    expect(lastToast(world.fake)).toBe("Done.");
    await afterBackground();
    expect(await accounts()).toEqual(["AC001", "AC003", "AC005"]);
    const after = texts(OWNER, from);
    expect(after).toContain("⏳ Importing 3 customers from customers.csv… The summary follows here.");
    expect(lastText(world.fake, OWNER)).toMatch(
      /^✅ Imported 3 new customers from customers\.csv; 0 already here, 3 refused \(of 6 rows\)\./,
    );
    const imported = await auditRows(database.db, "customers.imported", `tg:${OWNER}`);
    expect(imported).toHaveLength(1);
    expect(imported[0]).toMatchObject({ actorKind: "admin", channel: "telegram_admin" });
    const [amina] = await database.db
      .select({ status: subscriptions.status })
      .from(subscriptions)
      .innerJoin(customers, eq(customers.id, subscriptions.customerId))
      .where(eq(customers.accountNumber, "AC001"));
    expect(amina?.status).toBe("active");

    // The same button again: nothing more happens.
    await world.press(OWNER, "Import 3 customers", OWNER, question);
    expect(lastToast(world.fake)).toBe("Already done.");
    await afterBackground();
    expect(await customerCount()).toBe(3);
    expect(await auditRows(database.db, "customers.imported")).toHaveLength(1);
  });

  it("changes nothing when the same file comes again", async () => {
    const before = await accounts();
    const questions = shownIn(world.fake, OWNER).filter((c) => buttonsOf(c).length > 0).length;
    await send(OWNER, "customers.csv", FILE);
    expect(lastText(world.fake, OWNER)).toMatch(
      /6 rows — 0 new, 3 already here \(unchanged\), 3 refused[\s\S]*Nothing to import: no row is new\./,
    );
    expect(shownIn(world.fake, OWNER).filter((c) => buttonsOf(c).length > 0)).toHaveLength(questions);
    expect(await accounts()).toEqual(before);
  });

  it("refuses support and viewers, audited, without fetching the file", async () => {
    const fetched = world.fake.callsOf("getFile").length;
    for (const [user, role] of [
      [SUPPORT, "support"],
      [VIEWER, "viewer"],
    ] as const) {
      await send(user, "customers.csv", FILE);
      expect(lastText(world.fake, user)).toBe(
        `Your role (${role}) may not use /import. Ask an owner. /help lists what you may do.`,
      );
      const refused = await auditRows(database.db, "admin.refused", `tg:${user}`);
      expect(refused.at(-1)).toMatchObject({ entity: "admin_command", entityId: "import" });
    }
    expect(world.fake.callsOf("getFile").length).toBe(fetched);
  });

  it("refuses a file that is not CSV, or too large, without fetching it", async () => {
    const fetched = world.fake.callsOf("getFile").length;
    await send(OWNER, "customers.xlsx", "PK\u0003\u0004", {
      mimeType: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    });
    expect(lastText(world.fake, OWNER)).toMatch(
      /^customers\.xlsx is not a CSV file\. Save the spreadsheet as CSV/,
    );
    const big = world.fake.addDocument({ filename: "big.csv", bytes: HEADER });
    await sendDocument(OWNER, { ...big, file_size: 25 * 1024 * 1024 });
    expect(lastText(world.fake, OWNER)).toMatch(/^big\.csv is 25\.0 MB: the chat takes files up to 5\.0 MB/);
    expect(world.fake.callsOf("getFile").length).toBe(fetched);
  });

  it("says so when Telegram does not know the file", async () => {
    const ghost: FakeDocument = {
      file_id: "BQAC-never-sent",
      file_unique_id: "ghost",
      file_name: "ghost.csv",
      file_size: 100,
    };
    await sendDocument(OWNER, ghost);
    expect(lastText(world.fake, OWNER)).toBe(
      "❌ ghost.csv could not be fetched from Telegram (Telegram said: Bad Request: invalid file_id). Nothing was imported; send it again.",
    );
  });

  it("sends a long report as a file, and a cancelled import imports nothing", async () => {
    const bad = Array.from({ length: 25 }, (_, i) => `BX${i},Bad ${i},12${i},home-10,active,2026-06-30,,,0`);
    const file = [HEADER, "AC100,Dan Mwangi,0712000100,home-10,active,2026-06-30,,,0", ...bad].join("\n");
    const from = world.fake.calls.length;
    await send(OWNER, "many.csv", file);
    const report = texts(OWNER, from).find((t) => t.includes("dry run"))!;
    expect(report).toContain("…and 5 more: every row is in the file below.");
    const [document] = world.fake.calls
      .slice(from)
      .filter((c) => c.method === "sendDocument")
      .map((c) => c.payload.document as UploadedFile);
    expect(document?.filename).toBe("many-report.txt");
    const lines = Buffer.from(document!.bytes).toString("utf8");
    expect(lines).toContain("line 2 AC100: new");
    expect(lines).toContain('line 27 BX24: refused: bad phone "1224"');
    expect(buttonsOf(lastMenuIn(world.fake, OWNER)).map((b) => b.text)).toEqual([
      "✅ Import 1 customer",
      "Cancel",
    ]);

    await world.press(OWNER, "Cancel");
    await afterBackground();
    expect(lastText(world.fake, OWNER)).toBe("Cancelled: import 1 customer from many.csv.");
    expect(await accounts()).not.toContain("AC100");
  });

  it("takes a file captioned /import in the admin group, and leaves a file without one to the group", async () => {
    const file = [HEADER, "AC200,Faith Njeri,0712000200,home-10,active,2026-06-30,,,0"].join("\n");
    const captioned = world.fake.addDocument({ filename: "group.csv", bytes: file, mimeType: "text/csv" });
    const from = world.fake.calls.length;
    await world.deliver(documentUpdate(OWNER, captioned, "/import", ADMIN_GROUP));
    await afterBackground();
    expect(texts(ADMIN_GROUP, from).find((t) => t.includes("dry run"))).toMatch(/1 row — 1 new/);

    const plain = world.fake.addDocument({ filename: "holiday.csv", bytes: file, mimeType: "text/csv" });
    const fetched = world.fake.callsOf("getFile").length;
    const shown = shownIn(world.fake, ADMIN_GROUP).length;
    await world.deliver(documentUpdate(OWNER, plain, undefined, ADMIN_GROUP));
    await afterBackground();
    expect(world.fake.callsOf("getFile")).toHaveLength(fetched);
    expect(shownIn(world.fake, ADMIN_GROUP)).toHaveLength(shown);
    expect(await accounts()).not.toContain("AC200");
  });

  it("explains /import typed without a file", async () => {
    await world.say(OWNER, "/import");
    expect(lastText(world.fake, OWNER)).toMatch(/^Send the customers as a CSV file/);
    await world.say(OWNER, "/help");
    expect(lastText(world.fake, OWNER)).toContain("/import — send a customers CSV file");
  });
});
