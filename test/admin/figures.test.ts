import { sql } from "drizzle-orm";
import { PDFParse } from "pdf-parse";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CSV_HEADER } from "../../src/admin/report.ts";
import { businessStats } from "../../src/billing/stats.ts";
import { statsText } from "../../src/bots/admin/features/stats.ts";
import { ADMIN_CHANNEL } from "../../src/bots/admin/queued-api.ts";
import type { UploadedFile } from "../../src/bots/telegram/fake-uploads.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox, vouchers } from "../../src/db/schema/index.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { ADMIN_GROUP, type AdminWorld, auditRows, lastText, OWNER, startAdminWorld } from "./world.ts";

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let world: AdminWorld;
const clock = new FakeClock("2026-04-10T06:00:00Z");
const VIEWER = 6_600_004;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startAdminWorld(ctx);
  await world.say(OWNER, `/admin_add ${VIEWER} viewer Vic`);
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

interface FileRow {
  id: number;
  method: string;
  payload: Record<string, unknown> & { caption?: string };
  file: { filename: string; bytes: Buffer };
}

/** The file rows queued for `chat` on the admin channel since `afterId`. */
async function fileRows(chat: number, afterId = 0): Promise<FileRow[]> {
  const rows = await database.db
    .select()
    .from(messageOutbox)
    .where(
      sql`${messageOutbox.channel} = ${ADMIN_CHANNEL} and ${messageOutbox.recipient} = ${String(chat)} and ${messageOutbox.id} > ${afterId}`,
    )
    .orderBy(messageOutbox.id);
  return rows
    .map((r) => ({ id: r.id, content: r.content as { method: string; payload: FileRow["payload"] } }))
    .filter((r) => r.content.method === "sendPhoto" || r.content.method === "sendDocument")
    .map(({ id, content }) => {
      const field = content.method === "sendPhoto" ? "photo" : "document";
      const { $file } = content.payload[field] as { $file: { base64: string; filename: string } };
      return {
        id,
        method: content.method,
        payload: content.payload,
        file: { filename: $file.filename, bytes: Buffer.from($file.base64, "base64") },
      };
    });
}

const lastOutboxId = async () =>
  Number((await database.db.select({ id: sql<number>`coalesce(max(id), 0)` }).from(messageOutbox))[0]!.id);

describe("/stats", () => {
  it("shows the figures of the seeded data, as worked out by hand", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    await activeSubscriber(ctx, plan.id, "Stat One");
    await activeSubscriber(ctx, plan.id, "Stat Two");
    await world.say(VIEWER, "/stats");
    const text = lastText(world.fake, VIEWER);
    expect(text).toBe(
      statsText(await businessStats(database.db, clock, { timezone: ctx.settings.timezone })),
    );
    expect(text).toMatch(/Subscribers: 2 active, 0 suspended, 0 pending/);
    expect(text).toMatch(/Collected: KES 2,000 today, KES 2,000 this month/);
    expect(text).toMatch(/MRR: KES 2,000 · ARPU: KES 1,000/);
    expect(text).toMatch(/Owing: 0 customers, KES 0 in all/);
  });
});

describe("/report and /vouchers: files through the admin chat worker", () => {
  /** What the fake Bot API received as uploads (multipart), for `chat`, since `from` calls. */
  const uploadsTo = (chat: number, from = 0) =>
    world.fake.calls
      .slice(from)
      .filter(
        (c) =>
          (c.method === "sendPhoto" || c.method === "sendDocument") && Number(c.payload.chat_id) === chat,
      )
      .map((c) => {
        const file = (c.payload.photo ?? c.payload.document) as UploadedFile;
        return {
          method: c.method,
          caption: String(c.payload.caption ?? ""),
          filename: file.filename,
          bytes: Buffer.from(file.bytes),
        };
      });

  it("/report queues the chart as a photo and the figures as a CSV document; bad months change nothing", async () => {
    for (const [typed, answer] of [
      ["/report 2026-13", /is not a month: e.g\. 2026-03/],
      ["/report March", /is not a month/],
      ["/report 2099-01", /2099-01 has not happened yet/],
    ] as const) {
      const before = await lastOutboxId();
      await world.say(VIEWER, typed);
      expect(lastText(world.fake, VIEWER)).toMatch(answer);
      expect(await fileRows(VIEWER, before)).toHaveLength(0);
    }

    const before = await lastOutboxId();
    const callsBefore = world.fake.calls.length;
    await world.say(VIEWER, "/report");
    const rows = await fileRows(VIEWER, before);
    expect(rows.map((r) => [r.method, r.file.filename])).toEqual([
      ["sendPhoto", "report-2026-04.png"],
      ["sendDocument", "report-2025-05-to-2026-04.csv"],
    ]);
    const png = PNG.sync.read(rows[0]!.file.bytes);
    expect(png.width).toBe(1200);
    const csv = rows[1]!.file.bytes.toString("utf8").trim().split("\n");
    expect(csv[0]).toBe(CSV_HEADER.join(","));
    expect(csv).toHaveLength(13);
    expect(csv.at(-1)).toMatch(/^2026-04,2000\.00,/);

    // The admin chat worker uploaded both to the fake Bot API as multipart, as Telegram takes them.
    const uploads = uploadsTo(VIEWER, callsBefore);
    expect(uploads.map((u) => [u.method, u.filename])).toEqual([
      ["sendPhoto", "report-2026-04.png"],
      ["sendDocument", "report-2025-05-to-2026-04.csv"],
    ]);
    expect(uploads[0]!.bytes.equals(rows[0]!.file.bytes)).toBe(true);
    expect(uploads[0]!.caption).toBe("Revenue and subscribers, 2025-05 to 2026-04");

    const earlier = await lastOutboxId();
    await world.say(VIEWER, "/report 2026-02");
    const feb = await fileRows(VIEWER, earlier);
    expect(feb[1]!.file.bytes.toString("utf8").trim().split("\n").at(-1)).toMatch(/^2026-02,0\.00,/);
  });

  it("/vouchers creates a batch, audited, and queues its PDF; a viewer and bad arguments get nothing", async () => {
    const hot = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      code: "day-1",
      name: "Day pass",
    });
    const home = await createPlan(database.db, { priceCents: 100_000, code: "home-v" });
    const count = async () => (await database.db.select().from(vouchers)).length;

    await world.say(VIEWER, `/vouchers ${hot.code} 5`);
    expect(lastText(world.fake, VIEWER)).toMatch(/Your role \(viewer\) may not use \/vouchers/);
    for (const [typed, answer] of [
      ["/vouchers", /Say the hotspot plan's code/],
      [`/vouchers ${hot.code}`, /Say how many: 1 to 500/],
      [`/vouchers ${hot.code} 501`, /Say how many: 1 to 500/],
      ["/vouchers nosuch 5", /No plan nosuch/],
      [`/vouchers ${home.code} 5`, /Vouchers are sold for hotspot plans only/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }
    // In a group every member would keep the codes in their chat history.
    const groupBefore = await lastOutboxId();
    await world.say(OWNER, `/vouchers ${hot.code} 6`, ADMIN_GROUP);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(/use it in a private chat with me/);
    expect(await fileRows(ADMIN_GROUP, groupBefore)).toHaveLength(0);
    expect(await count()).toBe(0);

    const before = await lastOutboxId();
    const callsBefore = world.fake.calls.length;
    await world.say(OWNER, `/vouchers ${hot.code} 6`);
    const rows = await fileRows(OWNER, before);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.method).toBe("sendDocument");
    expect(rows[0]!.file.filename).toMatch(/^vouchers-day-1-batch-\d+\.pdf$/);
    expect(rows[0]!.payload.caption).toMatch(
      /: 6 × Day pass\. The codes work once sold: \/sold batch \d+, or \/sold <code…> for some of them\./,
    );
    const codes = (await database.db.select().from(vouchers)).map((v) => v.code);
    expect(codes).toHaveLength(6);
    const parser = new PDFParse({ data: new Uint8Array(rows[0]!.file.bytes) });
    try {
      const { text } = await parser.getText();
      for (const code of codes) expect(text).toContain(code);
    } finally {
      await parser.destroy();
    }
    expect((await auditRows(database.db, "voucher_batch.created", `tg:${OWNER}`)).length).toBe(1);

    const sent = uploadsTo(OWNER, callsBefore).at(-1)!;
    expect(sent.method).toBe("sendDocument");
    expect(sent.bytes.subarray(0, 5).toString()).toBe("%PDF-");
    expect(sent.bytes.equals(rows[0]!.file.bytes)).toBe(true);
  });
});
