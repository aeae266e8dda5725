import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { darajaTimestamp } from "./wire.ts";

/** The HTTP and identifier helpers of the Daraja fake (fake.ts). */

export function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The HTTP answer to an accepted push, or its failure on the way back: `reset` drops the connection,
 * `unavailable` is a 503 page from a gateway in front of Daraja, `hang` never answers.
 */
export function answerPush(
  res: ServerResponse,
  answer: "ok" | "reset" | "unavailable" | "hang",
  accepted: unknown,
): void {
  switch (answer) {
    case "ok":
      reply(res, 200, accepted);
      return;
    case "reset":
      res.socket?.destroy();
      return;
    case "unavailable": {
      const page = "<html><body><h1>503 Service Unavailable</h1></body></html>";
      res.writeHead(503, { "content-type": "text/html", "content-length": Buffer.byteLength(page) });
      res.end(page);
      return;
    }
    case "hang":
      // The fake's `close()` drops the connection if the client has not given up by then.
      return;
  }
}

/** An STK callback as Daraja posts it; the metadata only on success, with a `Balance` item without value. */
export function stkCallbackBody(input: {
  merchantRequestId: string;
  checkoutRequestId: string;
  result: { code: number; desc: string };
  receipt: string | null;
  amount: number;
  msisdn: string;
  paidAt: Date;
}) {
  return {
    Body: {
      stkCallback: {
        MerchantRequestID: input.merchantRequestId,
        CheckoutRequestID: input.checkoutRequestId,
        ResultCode: input.result.code,
        ResultDesc: input.result.desc,
        ...(input.receipt
          ? {
              CallbackMetadata: {
                Item: [
                  { Name: "Amount", Value: input.amount },
                  { Name: "MpesaReceiptNumber", Value: input.receipt },
                  { Name: "Balance" },
                  { Name: "TransactionDate", Value: Number(darajaTimestamp(input.paidAt)) },
                  { Name: "PhoneNumber", Value: Number(input.msisdn) },
                ],
              },
            }
          : {}),
      },
    },
  };
}

export async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    return value && typeof value === "object" ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export async function postJson(url: string, body: unknown): Promise<unknown> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { status: response.status, text };
  }
}

/** Daraja timestamps are Nairobi wall-clock time (UTC+3, no daylight saving). */
export function nairobiTimestampToMs(ts: string): number {
  const [y, mo, d, h, mi, s] = [0, 4, 6, 8, 10, 12].map((i, k) => Number(ts.slice(i, k === 0 ? 4 : i + 2)));
  return Date.UTC(y!, mo! - 1, d!, h!, mi!, s!) - 3 * 3_600_000;
}

const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
export function rand(n: number): string {
  const bytes = randomBytes(n);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}
export const receiptNumber = () => `T${rand(9)}`;
export const requestId = () => `${rand(5)}-${rand(8)}-1`;
