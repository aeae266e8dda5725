import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One SMS as the fake gateway received it. */
export interface FakeSms {
  messageId: string;
  username: string;
  to: string;
  from: string | null;
  message: string;
  receivedAt: Date;
}

export interface AtFakeOptions {
  username: string;
  apiKey: string;
  /** Called for every accepted message (sandbox mode logs them so a newcomer sees the SMS). */
  onMessage?: (sms: FakeSms) => void;
  /** Sender IDs registered on the account; unset: any `from` is accepted. */
  senderIds?: string[];
  /** Account balance in KES; unset: unlimited. Each SMS costs `COST_KES` per recipient. */
  balanceKes?: number;
}

/** What the fake charges per SMS and recipient, as AT's sandbox shows it. */
export const COST_KES = 0.8;

export interface AtFake {
  /** Base URL of the fake; SMS are posted to `${url}/version1/messaging` like the real API. */
  url: string;
  /** The full SMS endpoint, for `AT_SMS_URL`. */
  smsUrl: string;
  inbox: FakeSms[];
  /** Send requests received (accepted or not): what a worker asked of the gateway. */
  requests: number;
  /**
   * Registered sender IDs (null: any). A send `from` another answers as AT does: HTTP 201 with
   * `Message: "InvalidSenderId"` and no recipients, so nothing is sent.
   */
  senderIds: Set<string> | null;
  /** KES left (null: unlimited). Below one SMS's cost a recipient gets 405 `InsufficientBalance`. */
  balanceKes: number | null;
  /** Numbers that opted out of the sender's messages: their recipient status is 406 `UserInBlacklist`. */
  blacklist: Set<string>;
  /** While true, every send is answered 503 (an outage of Africa's Talking). */
  down: boolean;
  /**
   * The next `count` sends fail: `http` answers 500; `recipient` answers 201 with the recipient
   * refused by the network's gateway (502 `RejectedByGateway`), `gatewayError` with AT's own
   * failure for it (501 `GatewayError`), `invalid` with 403 `InvalidPhoneNumber`.
   */
  failNext(count: number, how?: "http" | "recipient" | "gatewayError" | "invalid"): void;
  /** Resolves once `predicate` matches a received SMS (polls the inbox). */
  waitFor(predicate: (sms: FakeSms) => boolean, timeoutMs?: number): Promise<FakeSms>;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Africa's Talking's SMS API as far as Tandao uses it, over real HTTP on 127.0.0.1: form-encoded
 * `POST /version1/messaging` with an `apikey` header, answered 201 with `SMSMessageData.Recipients`.
 */
export async function startAtFake(options: AtFakeOptions): Promise<AtFake> {
  const inbox: FakeSms[] = [];
  const failures: Array<"http" | "recipient" | "gatewayError" | "invalid"> = [];
  // The returned object holds the account's state, so that a test can change it between sends.
  let fake: AtFake;

  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const send = (status: number, payload: unknown) => {
        const text = typeof payload === "string" ? payload : JSON.stringify(payload);
        res.writeHead(status, {
          "content-type": typeof payload === "string" ? "text/plain" : "application/json",
        });
        res.end(text);
      };
      const path = (req.url ?? "").split("?")[0];
      if (req.method !== "POST" || path !== "/version1/messaging") return send(404, "Not Found");
      if (req.headers.apikey !== options.apiKey) return send(401, "The supplied authentication is invalid");
      const form = new URLSearchParams(body);
      if (form.get("username") !== options.username)
        return send(401, "The supplied authentication is invalid");
      const to = form.get("to");
      const message = form.get("message");
      if (!to || message === null)
        return send(400, "Request is missing required form field 'to' or 'message'");
      fake.requests++;
      if (fake.down) return send(503, "Service Unavailable");
      const failure = failures.shift();
      if (failure === "http") return send(500, "Internal Server Error");
      const from = form.get("from");
      if (from && fake.senderIds && !fake.senderIds.has(from)) {
        return send(201, { SMSMessageData: { Message: "InvalidSenderId", Recipients: [] } });
      }
      const refused = (number: string, statusCode: number, status: string) => ({
        statusCode,
        number,
        status,
        cost: "0",
        messageId: "None",
      });
      const recipients = to.split(",").map((number) => {
        if (failure === "recipient") return refused(number, 502, "RejectedByGateway");
        if (failure === "gatewayError") return refused(number, 501, "GatewayError");
        if (failure === "invalid") return refused(number, 403, "InvalidPhoneNumber");
        if (fake.blacklist.has(number)) return refused(number, 406, "UserInBlacklist");
        if (fake.balanceKes !== null) {
          if (fake.balanceKes < COST_KES) return refused(number, 405, "InsufficientBalance");
          fake.balanceKes = Math.round((fake.balanceKes - COST_KES) * 10_000) / 10_000;
        }
        const sms: FakeSms = {
          messageId: `ATXid_${randomBytes(12).toString("hex")}`,
          username: form.get("username")!,
          to: number,
          from: form.get("from"),
          message,
          receivedAt: new Date(),
        };
        inbox.push(sms);
        options.onMessage?.(sms);
        return {
          statusCode: 101,
          number,
          status: "Success",
          cost: `KES ${COST_KES.toFixed(4)}`,
          messageId: sms.messageId,
        };
      });
      const sent = recipients.filter((r) => r.status === "Success").length;
      send(201, {
        SMSMessageData: {
          Message: `Sent to ${sent}/${recipients.length} Total Cost: KES ${(sent * COST_KES).toFixed(4)}`,
          Recipients: recipients,
        },
      });
    })().catch(() => {
      res.writeHead(500);
      res.end();
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  fake = {
    url,
    smsUrl: `${url}/version1/messaging`,
    inbox,
    requests: 0,
    senderIds: options.senderIds ? new Set(options.senderIds) : null,
    balanceKes: options.balanceKes ?? null,
    blacklist: new Set(),
    down: false,
    failNext(count, how = "http") {
      for (let i = 0; i < count; i++) failures.push(how);
    },
    async waitFor(predicate, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = inbox.find(predicate);
        if (found) return found;
        if (Date.now() > deadline) throw new Error("no matching SMS reached the fake gateway in time");
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}
