import jsQR from "jsqr";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendWhatsAppQrToAdmins } from "../../src/bots/admin/whatsapp-qr.ts";
import type { UploadedFile } from "../../src/bots/telegram/fake-uploads.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { type AdminWorld, OWNER, startAdminWorld } from "./world.ts";

let database: Database;
let world: AdminWorld;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-10T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startAdminWorld(ctx);
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

describe("the WhatsApp Web login QR in the admin chat", () => {
  it("arrives as a picture that scans to the code WhatsApp showed, once per code", async () => {
    const qr = "2@Kx3yVq0d8hTz,AbCdEf1234567890==,q9W8e7R6t5Y4u3I2o1P0==,ZmFrZS1xcg==";
    expect(await sendWhatsAppQrToAdmins(ctx, qr)).toBe(1);
    expect(await sendWhatsAppQrToAdmins(ctx, qr)).toBe(0);
    await world.sendQueued();

    const photos = world.fake.callsOf("sendPhoto");
    expect(photos).toHaveLength(1);
    expect(Number(photos[0]!.payload.chat_id)).toBe(OWNER);
    expect(String(photos[0]!.payload.caption)).toContain("Linked devices");
    const png = PNG.sync.read(Buffer.from((photos[0]!.payload.photo as UploadedFile).bytes));
    const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    expect(decoded?.data).toBe(qr);
  });
});
