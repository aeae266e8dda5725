import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  answerPush,
  nairobiTimestampToMs,
  postJson,
  rand,
  readJson,
  receiptNumber,
  reply,
  requestId,
  stkCallbackBody,
} from "./fake-support.ts";
import { darajaTimestamp, stkPassword } from "./wire.ts";

/**
 * A Daraja stand-in on 127.0.0.1 that speaks the documented wire format: it issues tokens, checks
 * STK pushes the way Daraja does (Basic and Bearer auth, Password, Timestamp, field lengths),
 * answers STK queries, and posts the callback to the CallBackURL after a delay with a scripted
 * outcome; it can post duplicates, post late, or never post. It fails the way Daraja does: a wrong
 * passkey gets "Wrong credentials", a second push to a phone whose prompt is still open gets "Unable
 * to lock subscriber", and a push can be accepted while its answer is lost on the way back. Used by
 * the tests and by sandbox mode.
 */

export type StkOutcome = "success" | "cancelled" | "unreachable" | "wrong_pin" | "insufficient_funds";

export const outcomeResults: Record<StkOutcome, { code: number; desc: string }> = {
  success: { code: 0, desc: "The service request is processed successfully." },
  cancelled: { code: 1032, desc: "Request cancelled by user" },
  unreachable: { code: 1037, desc: "DS timeout user cannot be reached" },
  wrong_pin: { code: 2001, desc: "The initiator information is invalid." },
  insufficient_funds: { code: 1, desc: "The balance is insufficient for the transaction." },
};

export interface Delivery {
  outcome: StkOutcome;
  /** When the payer "answers" the prompt; the callback is posted then (default 50 ms). */
  delayMs?: number;
  /** Extra copies of the callback posted at once with the first. */
  duplicates?: number;
  /** The callback is never posted (the STK query still knows the result). */
  lost?: boolean;
  /** Posts the callback this much later than the result is known to the STK query. */
  lateByMs?: number;
  /** Pretends the payer paid another amount than was asked (shillings). */
  paidShillings?: number;
  /**
   * The push is accepted (the prompt is on the phone, the callback follows as above) but its HTTP
   * answer never arrives intact: `reset` drops the connection, `unavailable` answers 503 from
   * "something in front of Daraja" with no Daraja body, `hang` never answers (the client times out).
   */
  answer?: "ok" | "reset" | "unavailable" | "hang";
}

interface PushRecord {
  merchantRequestId: string;
  checkoutRequestId: string;
  msisdn: string;
  amount: number;
  accountReference: string;
  callbackUrl: string;
  delivery: Delivery;
  resolvesAt: number;
  receipt: string | null;
  body: Record<string, unknown>;
}

/** A prompt on a payer's phone, waiting for their decision (held mode). */
export interface PendingPush {
  checkoutRequestId: string;
  /** `2547…`, as Daraja writes it. */
  msisdn: string;
  /** Shillings. */
  amount: number;
  accountReference: string;
  shortcode: string;
  heldSince: Date;
}

interface HeldPush {
  push: PushRecord;
  since: Date;
  timer: NodeJS.Timeout;
}

export interface FakeDarajaOptions {
  /** Held mode: an undecided prompt times out (ResultCode 1037) after this long (default 90 s). */
  heldTimeoutMs?: number;
  consumerKey?: string;
  consumerSecret?: string;
  shortcode?: string;
  passkey?: string;
  till?: string;
  defaultDelivery?: Delivery;
  tokenLifetimeSeconds?: number;
  /** Daraja has been seen sending `expires_in` as a string and as a number. */
  expiresInAsNumber?: boolean;
  /** Posts C2B validation requests before confirmations (off by default, as on Daraja). */
  c2bValidation?: boolean;
}

const banned = /(m-?pesa|safaricom|exe|exec|cmd|sql|query)/i;

export class FakeDaraja {
  readonly consumerKey: string;
  readonly consumerSecret: string;
  readonly shortcode: string;
  readonly passkey: string;
  /** Pushes Daraja accepted (whether or not its answer reached the client). */
  readonly pushes: PushRecord[] = [];
  /** Every STK push request received, refused ones included. */
  pushRequests = 0;
  /** Pushes refused with a Daraja error, in order. */
  readonly refusals: { msisdn: string; errorCode: string; errorMessage: string }[] = [];
  tokensIssued = 0;
  queries = 0;
  callbacksPosted = 0;
  private readonly tokens = new Map<string, number>();
  private readonly byPhone = new Map<string, Delivery>();
  /** When the latest prompt to each number is answered (or expires). */
  private readonly promptsOpenUntil = new Map<string, number>();
  private readonly outcomes: Delivery[] = [];
  private readonly pushErrors: { status: number; errorCode: string; errorMessage: string }[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private c2bUrls: { confirmation: string; validation: string } | null = null;
  private server: Server | null = null;
  url = "";

  constructor(private readonly options: FakeDarajaOptions = {}) {
    this.consumerKey = options.consumerKey ?? "fake-key";
    this.consumerSecret = options.consumerSecret ?? "fake-secret";
    this.shortcode = options.shortcode ?? "174379";
    this.passkey = options.passkey ?? "fake-passkey";
  }

  static async start(options: FakeDarajaOptions = {}): Promise<FakeDaraja> {
    const fake = new FakeDaraja(options);
    await fake.listen();
    return fake;
  }

  private async listen(): Promise<void> {
    const server = createServer((req, res) => {
      void this.handle(req, res).catch(() => {
        if (!res.headersSent)
          reply(res, 500, { errorCode: "500.003.1001", errorMessage: "Internal Server Error" });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Every push to this number gets `delivery` (unless a queued outcome comes first). */
  scriptPhone(msisdn: string, delivery: Delivery): void {
    this.byPhone.set(msisdn.replace(/^\+/, ""), delivery);
  }

  /** The next pushes, whatever the number, get these deliveries in order. */
  queue(...deliveries: Delivery[]): void {
    this.outcomes.push(...deliveries);
  }

  /** The next push is refused with this Daraja error. */
  failNextPush(status: number, errorCode: string, errorMessage: string): void {
    this.pushErrors.push({ status, errorCode, errorMessage });
  }

  /** Forgets all tokens, as if they had expired. */
  expireTokens(): void {
    this.tokens.clear();
  }

  /** Waits until every scheduled callback has been posted and answered. */
  async idle(): Promise<void> {
    while (this.timers.size > 0 || this.inFlight.size > 0) {
      await Promise.allSettled([...this.inFlight]);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** A customer pays the paybill/till from their phone: validation (if on), then confirmation. */
  async c2b(input: {
    billRef: string;
    amountShillings: number | string;
    transId?: string;
    firstName?: string;
  }): Promise<{ validation?: unknown; confirmation?: unknown; transId: string }> {
    if (!this.c2bUrls) throw new Error("no C2B URLs registered");
    const transId = input.transId ?? receiptNumber();
    const body = {
      TransactionType: "Pay Bill",
      TransID: transId,
      TransTime: darajaTimestamp(new Date()),
      TransAmount:
        typeof input.amountShillings === "number" ? input.amountShillings.toFixed(2) : input.amountShillings,
      BusinessShortCode: this.shortcode,
      BillRefNumber: input.billRef,
      InvoiceNumber: "",
      OrgAccountBalance: "0.00",
      ThirdPartyTransID: "",
      MSISDN: "2547 ***** 126",
      FirstName: input.firstName ?? "JOHN",
      MiddleName: "",
      LastName: "",
    };
    let validation: unknown;
    if (this.options.c2bValidation) {
      validation = await postJson(this.c2bUrls.validation, body);
      if ((validation as { ResultCode?: unknown } | null)?.ResultCode !== "0") return { validation, transId };
    }
    const confirmation = await postJson(this.c2bUrls.confirmation, body);
    return { validation, confirmation, transId };
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const waiting of this.heldPushes.values()) clearTimeout(waiting.timer);
    this.heldPushes.clear();
    await Promise.allSettled([...this.inFlight]);
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const body = req.method === "POST" ? await readJson(req) : null;
    if (req.method === "GET" && url.pathname === "/oauth/v1/generate") return this.issueToken(req, url, res);
    if (req.method !== "POST")
      return reply(res, 404, { errorCode: "404.001.01", errorMessage: "Resource not found" });
    if (!this.bearerValid(req))
      return reply(res, 401, {
        requestId: requestId(),
        errorCode: "404.001.03",
        errorMessage: "Invalid Access Token",
      });
    if (!body)
      return reply(res, 400, {
        requestId: requestId(),
        errorCode: "400.002.05",
        errorMessage: "Invalid Request Payload",
      });
    switch (url.pathname) {
      case "/mpesa/stkpush/v1/processrequest":
        return this.stkPush(body, res);
      case "/mpesa/stkpushquery/v1/query":
        return this.stkQuery(body, res);
      case "/mpesa/c2b/v1/registerurl":
      case "/mpesa/c2b/v2/registerurl":
        return this.registerUrls(body, res);
      default:
        return reply(res, 404, { errorCode: "404.001.01", errorMessage: "Resource not found" });
    }
  }

  private issueToken(req: IncomingMessage, url: URL, res: ServerResponse) {
    const expected = `Basic ${Buffer.from(`${this.consumerKey}:${this.consumerSecret}`).toString("base64")}`;
    if (
      url.searchParams.get("grant_type") !== "client_credentials" ||
      req.headers.authorization !== expected
    ) {
      return reply(res, 400, {
        requestId: requestId(),
        errorCode: "400.008.01",
        errorMessage: "Invalid Authentication passed",
      });
    }
    const token = randomBytes(14).toString("base64url");
    const life = this.options.tokenLifetimeSeconds ?? 3599;
    this.tokens.set(token, Date.now() + life * 1000);
    this.tokensIssued++;
    reply(res, 200, {
      access_token: token,
      expires_in: this.options.expiresInAsNumber ? life : String(life),
    });
  }

  private bearerValid(req: IncomingMessage): boolean {
    const match = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    const expiry = match ? this.tokens.get(match[1]!) : undefined;
    return expiry !== undefined && expiry > Date.now();
  }

  /** Daraja's checks of shortcode, password and timestamp, shared by push and query. */
  private credentialProblem(body: Record<string, unknown>): string | null {
    if (String(body.BusinessShortCode ?? "") !== this.shortcode) return "Invalid BusinessShortCode";
    const timestamp = String(body.Timestamp ?? "");
    if (!/^\d{14}$/.test(timestamp)) return "Invalid Timestamp";
    const skew = Math.abs(nairobiTimestampToMs(timestamp) - Date.now());
    if (skew > 10 * 60_000) return "Invalid Timestamp";
    if (body.Password !== stkPassword(this.shortcode, this.passkey, timestamp)) return "Invalid Password";
    return null;
  }

  private stkPush(body: Record<string, unknown>, res: ServerResponse) {
    this.pushRequests++;
    const msisdn = String(body.PhoneNumber ?? "");
    const refuse = (status: number, errorCode: string, errorMessage: string) => {
      this.refusals.push({ msisdn, errorCode, errorMessage });
      reply(res, status, { requestId: requestId(), errorCode, errorMessage });
    };
    const bad = (what: string) => refuse(400, "400.002.02", `Bad Request - ${what}`);
    const credentials = this.credentialProblem(body);
    // Daraja answers a Password that does not match the shortcode and passkey with a 500.
    if (credentials === "Invalid Password") return refuse(500, "500.001.1001", "Wrong credentials");
    if (credentials) return bad(credentials);
    const type = body.TransactionType;
    if (type !== "CustomerPayBillOnline" && type !== "CustomerBuyGoodsOnline")
      return bad("Invalid TransactionType");
    const expectedPartyB =
      type === "CustomerBuyGoodsOnline" ? (this.options.till ?? this.shortcode) : this.shortcode;
    if (String(body.PartyB ?? "") !== expectedPartyB) return bad("Invalid PartyB");
    const amount = Number(body.Amount);
    if (!Number.isInteger(amount) || amount < 1) return bad("Invalid Amount");
    if (!/^254[17]\d{8}$/.test(msisdn)) return bad("Invalid PhoneNumber");
    if (String(body.PartyA ?? "") !== msisdn) return bad("Invalid PartyA");
    const callbackUrl = String(body.CallBackURL ?? "");
    if (!/^https?:\/\/[^\s]+$/.test(callbackUrl) || banned.test(callbackUrl))
      return bad("Invalid CallBackURL");
    const reference = body.AccountReference;
    if (typeof reference !== "string" || reference.length === 0 || reference.length > 12)
      return bad("Invalid AccountReference");
    const description = body.TransactionDesc;
    if (typeof description !== "string" || description.length > 13) return bad("Invalid TransactionDesc");
    const refusal = this.pushErrors.shift();
    if (refusal) return refuse(refusal.status, refusal.errorCode, refusal.errorMessage);
    // One prompt at a time per phone: until the payer answers (or the prompt expires) M-Pesa
    // refuses any other push to that number, ours or another merchant's.
    if (this.promptOpen(msisdn))
      return refuse(
        500,
        "500.001.1001",
        "Unable to lock subscriber, a transaction is already in process for the current subscriber",
      );

    // Held mode (the simulator): with nothing scripted, the prompt waits for a person's decision.
    if (this.held && this.outcomes.length === 0 && !this.byPhone.has(msisdn))
      return this.holdPush(res, { msisdn, amount, reference, callbackUrl });

    const delivery = this.outcomes.shift() ??
      this.byPhone.get(msisdn) ??
      this.options.defaultDelivery ?? {
        outcome: "success",
      };
    const merchantRequestId = `${rand(5)}-${rand(8)}-1`;
    const checkoutRequestId = `ws_CO_${darajaTimestamp(new Date())}${rand(10)}`;
    const delayMs = delivery.delayMs ?? 50;
    const result = outcomeResults[delivery.outcome];
    const receipt = result.code === 0 ? receiptNumber() : null;
    const callback = stkCallbackBody({
      merchantRequestId,
      checkoutRequestId,
      result,
      receipt,
      amount: delivery.paidShillings ?? amount,
      msisdn,
      paidAt: new Date(Date.now() + delayMs),
    });
    this.promptsOpenUntil.set(msisdn, Date.now() + delayMs);
    this.pushes.push({
      merchantRequestId,
      checkoutRequestId,
      msisdn,
      amount,
      accountReference: reference,
      callbackUrl,
      delivery,
      resolvesAt: Date.now() + delayMs,
      receipt,
      body: callback,
    });
    const accepted = {
      MerchantRequestID: merchantRequestId,
      CheckoutRequestID: checkoutRequestId,
      ResponseCode: "0",
      ResponseDescription: "Success. Request accepted for processing",
      CustomerMessage: "Success. Request accepted for processing",
    };
    answerPush(res, delivery.answer ?? "ok", accepted);
    if (!delivery.lost) {
      const copies = 1 + (delivery.duplicates ?? 0);
      this.schedule(delayMs + (delivery.lateByMs ?? 0), () =>
        Promise.all(Array.from({ length: copies }, () => this.postCallback(callbackUrl, callback))),
      );
    }
  }

  /** Whether a push to this number is still waiting for the payer's answer. */
  promptOpen(msisdn: string): boolean {
    return Date.now() < (this.promptsOpenUntil.get(msisdn.replace(/^\+/, "")) ?? 0);
  }

  /** Posts a callback as Daraja would; also usable to replay one (duplicates, late arrivals). */
  async postCallback(url: string, body: unknown): Promise<unknown> {
    this.callbacksPosted++;
    return postJson(url, body).catch(() => null);
  }

  private schedule(ms: number, task: () => Promise<unknown>): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const running = task().finally(() => this.inFlight.delete(running));
      this.inFlight.add(running);
    }, ms);
    this.timers.add(timer);
  }

  // ---- held mode: a person answers the prompt (the sandbox simulator) ----

  private held = false;
  private readonly heldPushes = new Map<string, HeldPush>();

  /**
   * While on, a push that nothing scripted waits for `decide` (pay with a PIN, wrong PIN, cancel,
   * ignore) instead of succeeding on its own; undecided, it times out as M-Pesa's prompt does
   * (`heldTimeoutMs`, default 90 s, ResultCode 1037). Turning it off leaves waiting pushes waiting.
   */
  holdPushes(on: boolean): void {
    this.held = on;
  }

  get holding(): boolean {
    return this.held;
  }

  /** Prompts waiting for the payer, oldest first; for one number when given (with or without `+`). */
  pendingPushes(msisdn?: string): PendingPush[] {
    const wanted = msisdn?.replace(/\D/g, "");
    return [...this.heldPushes.values()]
      .filter((p) => wanted === undefined || p.push.msisdn === wanted)
      .map((p) => ({
        checkoutRequestId: p.push.checkoutRequestId,
        msisdn: p.push.msisdn,
        amount: p.push.amount,
        accountReference: p.push.accountReference,
        shortcode: this.shortcode,
        heldSince: p.since,
      }));
  }

  /** The payer enters a PIN (4 digits) and pays: the callback carries a receipt. */
  approve(checkoutRequestId: string, pin: string): boolean {
    if (!/^\d{4}$/.test(pin)) throw new Error("an M-Pesa PIN is 4 digits");
    return this.decide(checkoutRequestId, "success");
  }

  /** The payer enters a wrong PIN: ResultCode 2001. */
  wrongPin(checkoutRequestId: string): boolean {
    return this.decide(checkoutRequestId, "wrong_pin");
  }

  /** The payer cancels the prompt: ResultCode 1032. */
  cancel(checkoutRequestId: string): boolean {
    return this.decide(checkoutRequestId, "cancelled");
  }

  /** The payer lets the prompt time out: ResultCode 1037 (now, rather than after the timeout). */
  ignore(checkoutRequestId: string): boolean {
    return this.decide(checkoutRequestId, "unreachable");
  }

  /** Ends a held prompt with `outcome` and posts its callback; false when no such prompt waits. */
  private decide(checkoutRequestId: string, outcome: StkOutcome): boolean {
    const waiting = this.heldPushes.get(checkoutRequestId);
    if (!waiting) return false;
    this.heldPushes.delete(checkoutRequestId);
    clearTimeout(waiting.timer);
    const { push } = waiting;
    const result = outcomeResults[outcome];
    push.delivery = { outcome, delayMs: 0 };
    push.receipt = result.code === 0 ? receiptNumber() : null;
    push.resolvesAt = Date.now();
    push.body = stkCallbackBody({
      merchantRequestId: push.merchantRequestId,
      checkoutRequestId: push.checkoutRequestId,
      result,
      receipt: push.receipt,
      amount: push.amount,
      msisdn: push.msisdn,
      paidAt: new Date(),
    });
    this.promptsOpenUntil.delete(push.msisdn);
    const body = push.body;
    this.schedule(0, () => this.postCallback(push.callbackUrl, body));
    return true;
  }

  private holdPush(
    res: ServerResponse,
    input: { msisdn: string; amount: number; reference: string; callbackUrl: string },
  ) {
    const merchantRequestId = `${rand(5)}-${rand(8)}-1`;
    const checkoutRequestId = `ws_CO_${darajaTimestamp(new Date())}${rand(10)}`;
    const push: PushRecord = {
      merchantRequestId,
      checkoutRequestId,
      msisdn: input.msisdn,
      amount: input.amount,
      accountReference: input.reference,
      callbackUrl: input.callbackUrl,
      delivery: { outcome: "unreachable" },
      resolvesAt: Number.POSITIVE_INFINITY,
      receipt: null,
      body: {},
    };
    this.pushes.push(push);
    this.promptsOpenUntil.set(input.msisdn, Number.POSITIVE_INFINITY);
    // Not among `timers`: `idle()` waits for callbacks due, not for a person to decide.
    const timer = setTimeout(
      () => this.decide(checkoutRequestId, "unreachable"),
      this.options.heldTimeoutMs ?? 90_000,
    );
    this.heldPushes.set(checkoutRequestId, { push, since: new Date(), timer });
    answerPush(res, "ok", {
      MerchantRequestID: merchantRequestId,
      CheckoutRequestID: checkoutRequestId,
      ResponseCode: "0",
      ResponseDescription: "Success. Request accepted for processing",
      CustomerMessage: "Success. Request accepted for processing",
    });
  }

  private stkQuery(body: Record<string, unknown>, res: ServerResponse) {
    this.queries++;
    const credentials = this.credentialProblem(body);
    if (credentials === "Invalid Password")
      return reply(res, 500, {
        requestId: requestId(),
        errorCode: "500.001.1001",
        errorMessage: "Wrong credentials",
      });
    if (credentials)
      return reply(res, 400, {
        requestId: requestId(),
        errorCode: "400.002.02",
        errorMessage: `Bad Request - ${credentials}`,
      });
    const push = this.pushes.find((p) => p.checkoutRequestId === body.CheckoutRequestID);
    if (!push)
      return reply(res, 400, {
        requestId: requestId(),
        errorCode: "400.002.02",
        errorMessage: "Bad Request - Invalid CheckoutRequestID",
      });
    if (Date.now() < push.resolvesAt)
      return reply(res, 500, {
        requestId: requestId(),
        errorCode: "500.001.1001",
        errorMessage: "The transaction is being processed",
      });
    const result = outcomeResults[push.delivery.outcome];
    reply(res, 200, {
      ResponseCode: "0",
      ResponseDescription: "The service request has been accepted successsfully",
      MerchantRequestID: push.merchantRequestId,
      CheckoutRequestID: push.checkoutRequestId,
      ResultCode: String(result.code),
      ResultDesc: result.desc,
    });
  }

  private registerUrls(body: Record<string, unknown>, res: ServerResponse) {
    const confirmation = String(body.ConfirmationURL ?? "");
    const validation = String(body.ValidationURL ?? "");
    if (banned.test(confirmation) || banned.test(validation))
      return reply(res, 400, {
        requestId: requestId(),
        errorCode: "400.003.02",
        errorMessage: "Bad Request - Invalid URL",
      });
    this.c2bUrls = { confirmation, validation };
    reply(res, 200, { OriginatorCoversationID: rand(12), ResponseCode: "0", ResponseDescription: "Success" });
  }
}
