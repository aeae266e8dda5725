import { desc, eq } from "drizzle-orm";
import jsQR from "jsqr";
import { PDFParse } from "pdf-parse";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cardBox,
  DEFAULT_PORTAL,
  hotspotLoginUrl,
  SHEET,
  validityText,
  voucherCards,
  voucherSheetPdf,
} from "../../src/admin/voucher-sheet.ts";
import { createVoucherBatch } from "../../src/billing/vouchers.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox, vouchers } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { OWNER, startAdminWorld } from "./world.ts";

const SCALE = 3;

/** Reads the PDF back: pdf-parse empties the array it is given, so it gets a copy. */
async function readBack(pdf: Uint8Array, screenshots = false) {
  const parser = new PDFParse({ data: pdf.slice() });
  try {
    const text = await parser.getText();
    const shots = screenshots ? await parser.getScreenshot({ scale: SCALE, imageBuffer: true }) : null;
    return { text, pages: shots?.pages.map((p) => PNG.sync.read(Buffer.from(p.data))) ?? [] };
  } finally {
    await parser.destroy();
  }
}

/** Decodes the QR code of card `index` from the rendered page it is on. */
function decodeCard(page: PNG, index: number): string | null {
  const { qr } = cardBox(index);
  const pad = 6;
  const x0 = Math.floor((qr.x - pad) * SCALE);
  const y0 = Math.floor((qr.y - pad) * SCALE);
  const side = Math.ceil((qr.size + 2 * pad) * SCALE);
  const crop = new Uint8ClampedArray(side * side * 4);
  for (let row = 0; row < side; row++) {
    const from = ((y0 + row) * page.width + x0) * 4;
    crop.set(page.data.subarray(from, from + side * 4), row * side * 4);
  }
  return jsQR(crop, side, side)?.data ?? null;
}

describe("voucher sheet", () => {
  let database: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.close();
  });

  it("30 codes of a batch: two A4 pages, every code printed and in its QR login link", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, {
      name: "Hotspot Day",
      kind: "hotspot",
      priceCents: 5_050,
      periodUnit: "hours",
      periodCount: 24,
      dataCapBytes: 2 * 1024 ** 3,
    });
    const { codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 30 });
    const stored = new Set(
      (await database.db.select({ code: vouchers.code }).from(vouchers)).map((v) => v.code),
    );
    const cards = voucherCards(plan, codes);
    expect(cards[0]).toEqual({
      code: codes[0],
      planName: "Hotspot Day",
      priceCents: 5_050,
      validity: "24 hours",
      dataCap: "2 GB",
    });

    const pdf = await voucherSheetPdf({
      isp: "Kibera Net",
      wifiName: "KiberaNet-WiFi",
      portalUrl: "wifi.kibera.net",
      vouchers: cards,
    });
    expect(Buffer.from(pdf.subarray(0, 5)).toString("latin1")).toBe("%PDF-");
    const { text, pages } = await readBack(pdf, true);
    expect(text.total).toBe(2);
    expect(pages).toHaveLength(2);
    // A4 at 72 dpi × SCALE
    expect([pages[0]!.width, pages[0]!.height]).toEqual(
      [SHEET.pageWidth, SHEET.pageHeight].map((v) => Math.floor(v * SCALE)),
    );
    expect(text.pages[0]!.text.split("KES 50.50").length - 1).toBe(24);
    expect(text.pages[1]!.text.split("KES 50.50").length - 1).toBe(6);
    for (const [i, code] of codes.entries()) {
      expect(stored.has(code)).toBe(true);
      expect(text.pages[Math.floor(i / 24)]!.text).toContain(code);
      const decoded = decodeCard(pages[cardBox(i).page]!, i);
      expect(decoded).toBe(`http://wifi.kibera.net/login?username=${code}&password=${code}`);
    }
    for (const words of ["Kibera Net", "Wi-Fi: KiberaNet-WiFi", "Hotspot Day", "24 hours · 2 GB"]) {
      expect(text.text).toContain(words);
    }
  });

  it("a batch printed from the admin chat logs in at the hotspot's address (HOTSPOT_LOGIN_URL)", async () => {
    const { ctx } = billingContext(database.db);
    const world = await startAdminWorld(ctx, { hotspotLoginUrl: "http://192.168.88.1" });
    try {
      const plan = await createPlan(database.db, { kind: "hotspot", code: "qr-hour", priceCents: 2_000 });
      await world.say(OWNER, `/vouchers ${plan.code} 1`);
      const [queued] = await database.db
        .select()
        .from(messageOutbox)
        .where(eq(messageOutbox.recipient, String(OWNER)))
        .orderBy(desc(messageOutbox.id))
        .limit(1);
      const { payload } = queued!.content as { payload: { document: { $file: { base64: string } } } };
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.planId, plan.id));
      const { pages } = await readBack(Buffer.from(payload.document.$file.base64, "base64"), true);
      expect(decodeCard(pages[0]!, 0)).toBe(
        `http://192.168.88.1/login?username=${voucher!.code}&password=${voucher!.code}`,
      );
    } finally {
      await world.close();
    }
  });

  it("24 cards fill one page; the 25th starts another", async () => {
    const card = { code: "ABCD2345", planName: "Weekly", priceCents: 30_000, validity: "7 days" };
    const count = async (n: number) => {
      const pdf = await voucherSheetPdf({ isp: "X", wifiName: "Y", vouchers: Array(n).fill(card) });
      return (await readBack(pdf)).text.total;
    };
    expect(await count(24)).toBe(1);
    expect(await count(25)).toBe(2);
    await expect(voucherSheetPdf({ isp: "X", wifiName: "Y", vouchers: [] })).rejects.toThrow(RangeError);
  });

  it("login links and validity texts", () => {
    expect(hotspotLoginUrl("AB23")).toBe(`${DEFAULT_PORTAL}/login?username=AB23&password=AB23`);
    expect(hotspotLoginUrl("AB23", "https://hotspot.example.net/")).toBe(
      "https://hotspot.example.net/login?username=AB23&password=AB23",
    );
    expect(validityText({ periodUnit: "months", periodCount: 1 })).toBe("1 month");
    expect(validityText({ periodUnit: "days", periodCount: 7 })).toBe("7 days");
  });
});
