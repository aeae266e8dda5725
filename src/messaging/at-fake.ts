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
}

export interface AtFake {
  /** Base URL of the fake; SMS are posted to `${url}/version1/messaging` like the real API. */
  url: string;
  /** The full SMS endpoint, for `AT_SMS_URL`. */
  smsUrl: string;
  inbox: FakeSms[];
  /** The next `count` sends fail: `http` answers 500, `recipient` answers 201 with a failed recipient. */
  failNext(count: number, how?: "http" | "recipient"): void;
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
  const failures: Array<"http" | "recipient"> = [];

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
      const failure = failures.shift();
      if (failure === "http") return send(500, "Internal Server Error");
      const recipients = to.split(",").map((number) => {
        if (failure === "recipient") {
          return { statusCode: 403, number, status: "InvalidPhoneNumber", cost: "0", messageId: "None" };
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
        return { statusCode: 101, number, status: "Success", cost: "KES 0.8000", messageId: sms.messageId };
      });
      const sent = recipients.filter((r) => r.status === "Success").length;
      send(201, {
        SMSMessageData: {
          Message: `Sent to ${sent}/${recipients.length} Total Cost: KES ${(sent * 0.8).toFixed(4)}`,
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

  return {
    url,
    smsUrl: `${url}/version1/messaging`,
    inbox,
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
}
