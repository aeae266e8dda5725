import PDFDocument from "pdfkit";
import QRCode from "qrcode";
import type { plans } from "../db/schema/index.ts";
import { formatData, validityText } from "../menu/plan-text.ts";
import { kesFromCents } from "./report.ts";

export { validityText };

/**
 * A printable A4 sheet of hotspot vouchers (`/vouchers <plan> <count>`): a grid of cards cut apart
 * along dashed lines, each with the ISP's name, the Wi-Fi network, plan, price, validity, the code
 * in large monospace and a QR code that logs in on the hotspot.
 *
 * The QR code holds `<portal>/login?username=<code>&password=<code>`: a voucher is a hotspot user
 * whose name and password are both the code (src/network/desired.ts), and the MikroTik hotspot's
 * login page accepts its form fields by GET as well as POST, so opening the link on a phone that
 * joined the Wi-Fi logs it in. `portalUrl` is the hotspot's `dns-name` (IP ▸ Hotspot ▸ Server
 * Profiles) or its address; without one the hotspot setup wizard's default address 10.5.50.1 is
 * used. A batch's codes go live on the router once sold (markVouchersSold): until then they do not
 * log in. Text uses PDF's built-in Helvetica and Courier (no font files are read from disk).
 */
export interface VoucherCard {
  code: string;
  planName: string;
  priceCents: number;
  /** e.g. "24 hours", "7 days", "1 month". */
  validity: string;
  /** e.g. "5 GB"; left out for an unlimited plan. */
  dataCap?: string | null;
}

export interface VoucherSheetInput {
  isp: string;
  wifiName: string;
  portalUrl?: string;
  vouchers: VoucherCard[];
}

export const DEFAULT_PORTAL = "http://10.5.50.1";

/** The sheet's geometry in PDF points (1/72 in), shared with the tests that read the QR codes back. */
export const SHEET = {
  pageWidth: 595.28,
  pageHeight: 841.89,
  margin: 18,
  columns: 3,
  rows: 8,
  qrSize: 74,
  padding: 7,
  get perPage() {
    return this.columns * this.rows;
  },
  get cardWidth() {
    return (this.pageWidth - 2 * this.margin) / this.columns;
  },
  get cardHeight() {
    return (this.pageHeight - 2 * this.margin) / this.rows;
  },
} as const;

/** Where card `index` (0-based, within its page) sits, and its QR code. */
export function cardBox(index: number) {
  const slot = index % SHEET.perPage;
  const x = SHEET.margin + (slot % SHEET.columns) * SHEET.cardWidth;
  const y = SHEET.margin + Math.floor(slot / SHEET.columns) * SHEET.cardHeight;
  const qrX = x + SHEET.cardWidth - SHEET.padding - SHEET.qrSize;
  const qrY = y + (SHEET.cardHeight - SHEET.qrSize) / 2;
  return { page: Math.floor(index / SHEET.perPage), x, y, qr: { x: qrX, y: qrY, size: SHEET.qrSize } };
}

/** What a card's QR code holds. */
export function hotspotLoginUrl(code: string, portalUrl: string = DEFAULT_PORTAL): string {
  const trimmed = portalUrl.trim().replace(/\/+$/, "");
  const base = /^https?:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`;
  const value = encodeURIComponent(code);
  return `${base}/login?username=${value}&password=${value}`;
}

type Plan = Pick<
  typeof plans.$inferSelect,
  "name" | "priceCents" | "periodUnit" | "periodCount" | "dataCapBytes"
>;

/** The cards of a batch (`createVoucherBatch` returns its codes) for its plan. */
export function voucherCards(plan: Plan, codes: string[]): VoucherCard[] {
  return codes.map((code) => ({
    code,
    planName: plan.name,
    priceCents: plan.priceCents,
    validity: validityText(plan),
    dataCap: plan.dataCapBytes ? formatData(plan.dataCapBytes) : null,
  }));
}

export async function voucherSheetPdf(input: VoucherSheetInput): Promise<Uint8Array> {
  if (input.vouchers.length === 0) throw new RangeError("no vouchers to print");
  const doc = new PDFDocument({
    size: "A4",
    margin: 0,
    autoFirstPage: false,
    info: { Title: `${input.isp} vouchers`, Author: input.isp, Creator: "Tandao" },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Uint8Array>((resolve, reject) => {
    doc.on("data", (chunk: Buffer) => chunks.push(chunk));
    doc.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
    doc.on("error", reject);
  });
  input.vouchers.forEach((voucher, index) => {
    if (index % SHEET.perPage === 0) {
      doc.addPage();
      cutLines(doc, Math.min(SHEET.perPage, input.vouchers.length - index));
    }
    drawCard(doc, input, voucher, index);
  });
  doc.end();
  return done;
}

/** Dashed lines around the rows of cards on this page (a last page's empty rows get none). */
function cutLines(doc: PDFKit.PDFDocument, cards: number): void {
  const { margin, pageWidth, columns, cardWidth, cardHeight } = SHEET;
  const rows = Math.ceil(cards / columns);
  const bottom = margin + rows * cardHeight + (2 * margin) / 3;
  doc.save().lineWidth(0.5).strokeColor("#999999").dash(3, { space: 3 });
  for (let c = 0; c <= columns; c++) {
    doc.moveTo(margin + c * cardWidth, margin / 3).lineTo(margin + c * cardWidth, bottom);
  }
  for (let r = 0; r <= rows; r++) {
    doc.moveTo(margin / 3, margin + r * cardHeight).lineTo(pageWidth - margin / 3, margin + r * cardHeight);
  }
  doc.stroke().undash().restore();
}

function drawCard(
  doc: PDFKit.PDFDocument,
  input: VoucherSheetInput,
  voucher: VoucherCard,
  index: number,
): void {
  const { x, y, qr } = cardBox(index);
  const left = x + SHEET.padding;
  const width = qr.x - left - 4;
  const line = (text: string, top: number, font: string, size: number, color = "#000000") =>
    doc
      .font(font)
      .fontSize(size)
      .fillColor(color)
      .text(text, left, y + top, { width, height: size * 1.3, lineBreak: false, ellipsis: true });
  line(input.isp, 7, "Helvetica-Bold", 9);
  line(`Wi-Fi: ${input.wifiName}`, 19, "Helvetica", 7, "#333333");
  line(voucher.planName, 30, "Helvetica", 7, "#333333");
  const terms = [voucher.validity, voucher.dataCap].filter(Boolean).join(" · ");
  line(terms, 40, "Helvetica", 7, "#333333");
  line(`KES ${kesFromCents(voucher.priceCents)}`, 51, "Helvetica-Bold", 10);
  line(voucher.code, 66, "Courier-Bold", 16);
  line("Scan, or log in with the code", SHEET.cardHeight - 12, "Helvetica", 5.5, "#666666");
  drawQr(doc, hotspotLoginUrl(voucher.code, input.portalUrl), qr.x, qr.y, qr.size);
}

/** The QR code as vector squares (sharp at any print size, and fast: no image per card). */
function drawQr(doc: PDFKit.PDFDocument, payload: string, x: number, y: number, size: number): void {
  const qr = QRCode.create(payload, { errorCorrectionLevel: "M" });
  const n = qr.modules.size;
  const quiet = 2; // modules of white around the code (printed cards have a white margin anyway)
  const cell = size / (n + 2 * quiet);
  doc.save().fillColor("#000000");
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      if (qr.modules.get(row, col)) {
        doc.rect(x + (col + quiet) * cell, y + (row + quiet) * cell, cell + 0.01, cell + 0.01);
      }
    }
  }
  doc.fill().restore();
}
