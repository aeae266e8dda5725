import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { and, desc, eq, gt, sql } from "drizzle-orm";
import type { Hono } from "hono";
import { type Db, queryRows } from "../../src/db/client.ts";
import { ledgerEntries, messageOutbox, mpesaCallbacks, payments } from "../../src/db/schema/index.ts";
import { darajaTimestamp } from "../../src/payments/mpesa/wire.ts";
import { callbackPaths } from "../../src/payments/routes.ts";
import { type Harness, token } from "./harness.ts";

/** Helpers for the inbox, orphan and identity tests: raw HTTP posts and what an operator would look at. */

export interface Answer {
  status: number;
  text: string;
}

/** A body sent in chunks without a content-length (a size limit must hold while reading, too). */
export interface Chunked {
  chunked: Buffer;
  chunkBytes: number;
}

export function chunked(text: string, chunkBytes = 16 * 1024): Chunked {
  return { chunked: Buffer.from(text), chunkBytes };
}

/**
 * Posts a body exactly as given, over a fresh connection, and reads the answer even when the server
 * answers before the body is all sent (as it does for a body over its limit). node:http rather than
 * fetch: fetch may report such an early answer as "other side closed" instead of returning it.
 */
export function postRaw(
  url: string,
  body: string | Buffer | Chunked,
  contentType = "application/json",
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const headers: Record<string, string | number> = { "content-type": contentType };
    const payload = typeof body === "string" ? Buffer.from(body) : body;
    if (Buffer.isBuffer(payload)) headers["content-length"] = payload.length;
    let answered = false;
    const req = request(url, { method: "POST", headers, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
      );
      res.on("error", reject);
    });
    // Writing the rest of a refused body may fail once the server has answered: that is expected.
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    if (Buffer.isBuffer(payload)) {
      req.end(payload);
      return;
    }
    const { chunked: bytes, chunkBytes } = payload;
    let offset = 0;
    const writeNext = () => {
      while (offset < bytes.length && !req.destroyed) {
        const more = req.write(bytes.subarray(offset, offset + chunkBytes));
        offset += chunkBytes;
        if (!more) {
          req.once("drain", writeNext);
          return;
        }
      }
      if (!req.destroyed) req.end();
    };
    writeNext();
  });
}

export const c2bConfirmUrl = (h: Harness) => `${h.baseUrl}${callbackPaths.c2bConfirmation(token)}`;
export const c2bValidateUrl = (h: Harness) => `${h.baseUrl}${callbackPaths.c2bValidation(token)}`;

/** A paybill confirmation as Daraja posts it. */
export function c2bConfirmation(input: {
  transId: string;
  billRef: string;
  amount: string;
  shortcode: string;
  paidAt?: Date;
}) {
  return {
    TransactionType: "Pay Bill",
    TransID: input.transId,
    TransTime: darajaTimestamp(input.paidAt ?? new Date()),
    TransAmount: input.amount,
    BusinessShortCode: input.shortcode,
    BillRefNumber: input.billRef,
    InvoiceNumber: "",
    OrgAccountBalance: "0.00",
    ThirdPartyTransID: "",
    MSISDN: "2547 ***** 126",
    FirstName: "JOHN",
    MiddleName: "",
    LastName: "",
  };
}

let receiptSeq = 0;
/** A receipt number nobody has used (M-Pesa's shape: 10 upper-case letters and digits). */
export function freshReceipt(): string {
  receiptSeq++;
  return `U${String(process.pid % 1000).padStart(3, "0")}${String(receiptSeq).padStart(3, "0")}${Math.random()
    .toString(36)
    .slice(2, 5)
    .toUpperCase()
    .padEnd(3, "X")}`;
}

/** The app on a real port. */
export async function serveApp(app: Hono): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The newest inbox row's id (0 when there is none): rows stored after it are a test's own. */
export async function lastInboxId(db: Db): Promise<number> {
  const [row] = await db
    .select({ id: mpesaCallbacks.id })
    .from(mpesaCallbacks)
    .orderBy(desc(mpesaCallbacks.id))
    .limit(1);
  return row?.id ?? 0;
}

/** Inbox rows stored after `afterId`, oldest first. */
export async function inboxRowsAfter(db: Db, afterId: number) {
  return db.select().from(mpesaCallbacks).where(gt(mpesaCallbacks.id, afterId)).orderBy(mpesaCallbacks.id);
}

export async function paymentsByRef(db: Db, providerRef: string) {
  return db
    .select()
    .from(payments)
    .where(and(eq(payments.provider, "mpesa"), eq(payments.providerRef, providerRef)));
}

/** Every payment ledger entry in the database (any customer). */
export async function allPaymentCredits(db: Db): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(ledgerEntries)
    .where(eq(ledgerEntries.kind, "payment"));
  return Number(row!.n);
}

export async function smsTo(db: Db, phone: string, template: string) {
  return db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, template)));
}

/**
 * Puts the database in a state where crediting a payment fails (a trigger refuses every insert into
 * `payments`) until the returned `repair` is called. `tries()` says how many inserts were refused.
 */
export async function breakPaymentInserts(
  db: Db,
): Promise<{ repair(): Promise<void>; tries(): Promise<number> }> {
  await db.execute(sql`drop sequence if exists test_refused_payments`);
  await db.execute(sql`create sequence test_refused_payments`);
  await db.execute(
    sql.raw(`create or replace function test_refuse_payment() returns trigger language plpgsql as $$
      begin
        perform nextval('test_refused_payments');
        raise exception 'payments table refusing writes (test)';
      end $$`),
  );
  await db.execute(sql`create trigger test_refuse_payment before insert on payments
    for each row execute function test_refuse_payment()`);
  return {
    async repair() {
      await db.execute(sql`drop trigger if exists test_refuse_payment on payments`);
    },
    async tries() {
      const [row] = await queryRows<{ n: number }>(
        db,
        sql`select (case when is_called then last_value else 0 end)::int as n from test_refused_payments`,
      );
      return Number(row?.n ?? 0);
    },
  };
}
