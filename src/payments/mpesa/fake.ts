import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type C2bAnswers, type C2bPayment, postC2bPayment } from "./fake-c2b.ts";
import { banned, credentialProblem, pushFieldProblem } from "./fake-checks.ts";
import { HeldPushes, type PendingPush } from "./fake-held.ts";
import { acceptPush, type Delivery, outcomeResults, type PushRecord } from "./fake-push.ts";
import {
  answerPush,
  postJson,
  rand,
  readJson,
  receiptNumber,
  reply,
  requestId,
  stkCallbackBody,
} from "./fake-support.ts";

export type { PendingPush } from "./fake-held.ts";
export { type Delivery, outcomeResults, type StkOutcome } from "./fake-push.ts";

/**
 * A Daraja stand-in on 127.0.0.1 that speaks the documented wire format: it issues tokens, checks
 * STK pushes the way Daraja does (Basic and Bearer auth, Password, Timestamp, field lengths),
 * answers STK queries, and posts the callback to the CallBackURL after a delay with a scripted
 * outcome; it can post duplicates, post late, or never post. It fails the way Daraja does: a wrong
 * passkey gets "Wrong credentials", a second push to a phone whose prompt is still open gets "Unable
 * to lock subscriber", and a push can be accepted while its answer is lost on the way back. Used by
 * the tests and by sandbox mode.
 */

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

/** A Daraja error answer: each carries a requestId of its own. */
function darajaError(res: ServerResponse, status: number, errorCode: string, errorMessage: string): void {
  reply(res, status, { requestId: requestId(), errorCode, errorMessage });
}

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
  private readonly held: HeldPushes;
  private c2bUrls: { confirmation: string; validation: string } | null = null;
  private server: Server | null = null;
  url = "";

  constructor(private readonly options: FakeDarajaOptions = {}) {
    this.consumerKey = options.consumerKey ?? "fake-key";
    this.consumerSecret = options.consumerSecret ?? "fake-secret";
    this.shortcode = options.shortcode ?? "174379";
    this.passkey = options.passkey ?? "fake-passkey";
    this.held = new HeldPushes(
      {
        shortcode: this.shortcode,
        pushes: this.pushes,
        promptsOpenUntil: this.promptsOpenUntil,
        postCallbackSoon: (url, body) => this.schedule(0, () => this.postCallback(url, body)),
      },
      options.heldTimeoutMs ?? 90_000,
    );
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

  /**
   * While set, every STK status query is answered with this error, as during a Daraja incident
   * (pushes and callbacks go on as usual); null ends it.
   */
  queryOutage: { status: number; errorCode: string; errorMessage: string } | null = null;

  /**
   * How a token no longer valid is refused: Daraja's documented `404.001.03`, or as other gateways
   * of it answer, `401.003.01` "Invalid Access Token".
   */
  tokenRefusal: { errorCode: string; errorMessage: string } = {
    errorCode: "404.001.03",
    errorMessage: "Invalid Access Token",
  };

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
  async c2b(input: C2bPayment): Promise<C2bAnswers> {
    if (!this.c2bUrls) throw new Error("no C2B URLs registered");
    return postC2bPayment(this.c2bUrls, this.shortcode, this.options.c2bValidation ?? false, input);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.held.clear();
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
      return darajaError(res, 401, this.tokenRefusal.errorCode, this.tokenRefusal.errorMessage);
    if (!body) return darajaError(res, 400, "400.002.05", "Invalid Request Payload");
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
      return darajaError(res, 400, "400.008.01", "Invalid Authentication passed");
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

  private stkPush(body: Record<string, unknown>, res: ServerResponse) {
    this.pushRequests++;
    const msisdn = String(body.PhoneNumber ?? "");
    const refuse = (status: number, errorCode: string, errorMessage: string) => {
      this.refusals.push({ msisdn, errorCode, errorMessage });
      darajaError(res, status, errorCode, errorMessage);
    };
    const problem =
      credentialProblem(body, this.shortcode, this.passkey) ??
      pushFieldProblem(body, this.shortcode, this.options.till);
    // Daraja answers a Password that does not match the shortcode and passkey with a 500.
    if (problem === "Invalid Password") return refuse(500, "500.001.1001", "Wrong credentials");
    if (problem) return refuse(400, "400.002.02", `Bad Request - ${problem}`);
    const amount = Number(body.Amount);
    const reference = String(body.AccountReference);
    const callbackUrl = String(body.CallBackURL ?? "");
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
    if (this.held.on && this.outcomes.length === 0 && !this.byPhone.has(msisdn))
      return this.held.hold(res, { msisdn, amount, reference, callbackUrl });

    const delivery = this.outcomes.shift() ??
      this.byPhone.get(msisdn) ??
      this.options.defaultDelivery ?? {
        outcome: "success",
      };
    const { merchantRequestId, checkoutRequestId, accepted } = acceptPush();
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

  // ---- held mode: a person answers the prompt (the sandbox simulator), in fake-held.ts ----

  /**
   * While on, a push that nothing scripted waits for the payer's decision (pay with a PIN, wrong
   * PIN, cancel, ignore) instead of succeeding on its own; undecided, it times out as M-Pesa's
   * prompt does (`heldTimeoutMs`, default 90 s, ResultCode 1037). Turning it off leaves waiting
   * pushes waiting.
   */
  holdPushes(on: boolean): void {
    this.held.on = on;
  }

  get holding(): boolean {
    return this.held.on;
  }

  /** Prompts waiting for the payer, oldest first; for one number when given (with or without `+`). */
  pendingPushes(msisdn?: string): PendingPush[] {
    return this.held.pending(msisdn);
  }

  /** The payer enters a PIN (4 digits) and pays: the callback carries a receipt. */
  approve(checkoutRequestId: string, pin: string): boolean {
    if (!/^\d{4}$/.test(pin)) throw new Error("an M-Pesa PIN is 4 digits");
    return this.held.decide(checkoutRequestId, "success");
  }

  /** The payer enters a wrong PIN: ResultCode 2001. */
  wrongPin(checkoutRequestId: string): boolean {
    return this.held.decide(checkoutRequestId, "wrong_pin");
  }

  /** The payer cancels the prompt: ResultCode 1032. */
  cancel(checkoutRequestId: string): boolean {
    return this.held.decide(checkoutRequestId, "cancelled");
  }

  /** The payer lets the prompt time out: ResultCode 1037 (now, rather than after the timeout). */
  ignore(checkoutRequestId: string): boolean {
    return this.held.decide(checkoutRequestId, "unreachable");
  }

  private stkQuery(body: Record<string, unknown>, res: ServerResponse) {
    this.queries++;
    const credentials = credentialProblem(body, this.shortcode, this.passkey);
    if (credentials === "Invalid Password") return darajaError(res, 500, "500.001.1001", "Wrong credentials");
    if (credentials) return darajaError(res, 400, "400.002.02", `Bad Request - ${credentials}`);
    if (this.queryOutage) {
      const { status, errorCode, errorMessage } = this.queryOutage;
      return darajaError(res, status, errorCode, errorMessage);
    }
    const push = this.pushes.find((p) => p.checkoutRequestId === body.CheckoutRequestID);
    if (!push) return darajaError(res, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID");
    if (Date.now() < push.resolvesAt)
      return darajaError(res, 500, "500.001.1001", "The transaction is being processed");
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
      return darajaError(res, 400, "400.003.02", "Bad Request - Invalid URL");
    this.c2bUrls = { confirmation, validation };
    reply(res, 200, { OriginatorCoversationID: rand(12), ResponseCode: "0", ResponseDescription: "Success" });
  }
}
