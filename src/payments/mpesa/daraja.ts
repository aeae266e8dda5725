import type { Clock } from "../../clock.ts";
import {
  darajaTimestamp,
  errorBody,
  type StkPushAccepted,
  type StkQueryResponse,
  stkPassword,
  stkPushAccepted,
  stkQueryResponse,
  tokenResponse,
} from "./wire.ts";

export const darajaHosts = {
  test: "https://sandbox.safaricom.co.ke",
  production: "https://api.safaricom.co.ke",
} as const;

/**
 * How a failed Daraja call should be treated:
 * - `configuration`: our credentials or shortcode are wrong; nothing will work until an operator
 *   fixes the settings, and the push surely did not reach the payer;
 * - `busy`: the subscriber has another prompt open ("Unable to lock subscriber"); try again later;
 * - `uncertain`: the request may have reached Daraja but its answer was lost (a dropped connection,
 *   a timeout, a gateway error, an unreadable answer): the payer may have been prompted;
 * - `transient`: refused for now (spike arrest, an expired token, a connection never made);
 * - `refused`: refused for good (a bad phone number, amount, ...).
 */
export type DarajaFailureKind = "configuration" | "busy" | "uncertain" | "transient" | "refused";

/** A refusal from Daraja (its `errorCode`/`errorMessage`), or a transport failure (`errorCode` "network"). */
export class DarajaError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    readonly errorMessage: string,
    readonly requestId?: string,
    /** The request may have been carried out although no (readable) answer came back. */
    readonly uncertain = false,
  ) {
    super(`Daraja ${errorCode}: ${errorMessage}`);
    this.name = "DarajaError";
  }

  get kind(): DarajaFailureKind {
    if (this.uncertain) return "uncertain";
    if (this.wrongConfiguration) return "configuration";
    if (this.subscriberBusy) return "busy";
    if (this.errorCode === "network" || this.tokenRefused) return "transient";
    if (this.status >= 500 || this.status === 429) return "transient";
    return "refused";
  }

  /** Worth trying again later: the network, spike arrest, an expired token, a busy subscriber, 5xx. */
  get retryable(): boolean {
    const kind = this.kind;
    return kind === "uncertain" || kind === "busy" || kind === "transient";
  }

  /**
   * Daraja refused our app credentials (token), or the shortcode and passkey behind the push
   * Password ("Wrong credentials", which Daraja sends as a 500 with the same code as a busy
   * subscriber, hence the message test).
   */
  get wrongConfiguration(): boolean {
    if (this.errorCode === "400.008.01") return true;
    if (this.errorCode === "500.001.1001") return /wrong credentials/i.test(this.errorMessage);
    return this.errorCode === "400.002.02" && /invalid (businessshortcode|password)/i.test(this.errorMessage);
  }

  /**
   * Daraja no longer takes the access token it gave: expired early or revoked. Documented as
   * `404.001.03`; other gateways answer a 401 (`401.003.01`, "Invalid Access Token").
   */
  get tokenRefused(): boolean {
    return (
      this.errorCode === "404.001.03" ||
      this.status === 401 ||
      /invalid access token/i.test(this.errorMessage)
    );
  }

  /** The payer's phone has a prompt open (this push's or another merchant's). */
  get subscriberBusy(): boolean {
    return (
      this.errorCode === "500.001.1001" &&
      /unable to lock subscriber|already in process for the (current )?subscriber/i.test(this.errorMessage)
    );
  }

  /** An STK query for a push M-Pesa has not finished yet. */
  get stillProcessing(): boolean {
    return this.errorCode === "500.001.1001" && /process/i.test(this.errorMessage) && !this.subscriberBusy;
  }
}

/**
 * Failures of the connection itself (refused, no such host, no route): the request never left this
 * machine, so Daraja cannot have acted on it. Anything else may have happened after it was sent.
 */
const notConnectedCodes = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

function neverConnected(error: unknown): boolean {
  const cause =
    error instanceof Error ? (error.cause as { code?: unknown; errors?: unknown } | undefined) : undefined;
  if (!cause) return false;
  if (typeof cause.code === "string" && notConnectedCodes.has(cause.code)) return true;
  // Happy eyeballs: one error per address tried, all of them failures to connect.
  return (
    Array.isArray(cause.errors) &&
    cause.errors.length > 0 &&
    cause.errors.every(
      (e: { code?: unknown }) => typeof e?.code === "string" && notConnectedCodes.has(e.code),
    )
  );
}

export interface StkPushRequest {
  /** `2547XXXXXXXX` */
  msisdn: string;
  amountShillings: number;
  accountReference: string;
  description: string;
  callbackUrl: string;
}

/** What the payment workers need from M-Pesa; the fake and Daraja both speak it over HTTP. */
export interface StkGateway {
  stkPush(request: StkPushRequest): Promise<StkPushAccepted>;
  stkQuery(checkoutRequestId: string): Promise<StkQueryResponse>;
}

export interface DarajaOptions {
  baseUrl: string;
  consumerKey: string;
  consumerSecret: string;
  /** The paybill (or the store number of a till) that pushes are made for. */
  shortcode: string;
  passkey: string;
  /** When set, pushes are Buy Goods to this till (`PartyB`), else Pay Bill to the shortcode. */
  till?: string;
  clock: Clock;
  timeoutMs?: number;
}

export class DarajaClient implements StkGateway {
  private token: { value: string; refreshAt: number } | null = null;
  private tokenInFlight: Promise<string> | null = null;

  constructor(private readonly options: DarajaOptions) {}

  /** A cached bearer token, renewed a minute (or a tenth of its life) before it expires. */
  async accessToken(): Promise<string> {
    const now = this.options.clock.now().getTime();
    if (this.token && now < this.token.refreshAt) return this.token.value;
    if (!this.tokenInFlight) {
      this.tokenInFlight = this.fetchToken().finally(() => {
        this.tokenInFlight = null;
      });
    }
    return this.tokenInFlight;
  }

  private async fetchToken(): Promise<string> {
    const basic = Buffer.from(`${this.options.consumerKey}:${this.options.consumerSecret}`).toString(
      "base64",
    );
    const body = await this.send(
      "GET",
      "/oauth/v1/generate?grant_type=client_credentials",
      `Basic ${basic}`,
    ).catch((error: unknown) => {
      // The token's own request refused: our consumer key and secret, not a token gone stale.
      if (error instanceof DarajaError && (error.status === 400 || error.status === 401))
        throw new DarajaError(error.status, "400.008.01", error.errorMessage, error.requestId);
      throw error;
    });
    const parsed = tokenResponse.safeParse(body);
    if (!parsed.success) throw new DarajaError(502, "bad_response", "token response without access_token");
    const lifeMs = (Number.isFinite(parsed.data.expires_in) ? parsed.data.expires_in : 3599) * 1000;
    const margin = Math.min(60_000, lifeMs / 10);
    this.token = {
      value: parsed.data.access_token,
      refreshAt: this.options.clock.now().getTime() + lifeMs - margin,
    };
    return parsed.data.access_token;
  }

  async stkPush(request: StkPushRequest): Promise<StkPushAccepted> {
    if (!Number.isSafeInteger(request.amountShillings) || request.amountShillings < 1)
      throw new RangeError("M-Pesa takes a whole number of shillings, at least 1");
    const timestamp = darajaTimestamp(this.options.clock.now());
    const { shortcode, passkey, till } = this.options;
    const payload = {
      BusinessShortCode: shortcode,
      Password: stkPassword(shortcode, passkey, timestamp),
      Timestamp: timestamp,
      TransactionType: till ? "CustomerBuyGoodsOnline" : "CustomerPayBillOnline",
      Amount: request.amountShillings,
      PartyA: request.msisdn,
      PartyB: till ?? shortcode,
      PhoneNumber: request.msisdn,
      CallBackURL: request.callbackUrl,
      AccountReference: request.accountReference.slice(0, 12),
      TransactionDesc: request.description.slice(0, 13),
    };
    const body = await this.authorized("/mpesa/stkpush/v1/processrequest", payload, true);
    const parsed = stkPushAccepted.safeParse(body);
    // A success status without a readable checkout id: the push may well be on the phone.
    if (!parsed.success)
      throw new DarajaError(
        502,
        "bad_response",
        "STK push answer without CheckoutRequestID",
        undefined,
        true,
      );
    if (parsed.data.ResponseCode !== "0")
      throw new DarajaError(200, parsed.data.ResponseCode, parsed.data.ResponseDescription ?? "push refused");
    return parsed.data;
  }

  async stkQuery(checkoutRequestId: string): Promise<StkQueryResponse> {
    const timestamp = darajaTimestamp(this.options.clock.now());
    const { shortcode, passkey } = this.options;
    const body = await this.authorized("/mpesa/stkpushquery/v1/query", {
      BusinessShortCode: shortcode,
      Password: stkPassword(shortcode, passkey, timestamp),
      Timestamp: timestamp,
      CheckoutRequestID: checkoutRequestId,
    });
    const parsed = stkQueryResponse.safeParse(body);
    if (!parsed.success) throw new DarajaError(502, "bad_response", "STK query answer without ResultCode");
    return parsed.data;
  }

  async registerC2bUrls(input: {
    confirmationUrl: string;
    validationUrl: string;
    responseType?: "Completed" | "Cancelled";
  }): Promise<unknown> {
    return this.authorized("/mpesa/c2b/v1/registerurl", {
      ShortCode: this.options.till ?? this.options.shortcode,
      ResponseType: input.responseType ?? "Completed",
      ConfirmationURL: input.confirmationUrl,
      ValidationURL: input.validationUrl,
    });
  }

  /**
   * One retry with a fresh token when Daraja says the cached one is no longer valid. Failures to get
   * a token are never uncertain: the request itself was not sent.
   */
  private async authorized(path: string, payload: unknown, acts = false): Promise<unknown> {
    try {
      return await this.send("POST", path, `Bearer ${await this.accessToken()}`, payload, acts);
    } catch (error) {
      if (!(error instanceof DarajaError) || !error.tokenRefused) throw error;
      this.token = null;
      return this.send("POST", path, `Bearer ${await this.accessToken()}`, payload, acts);
    }
  }

  /**
   * `acts`: the request makes Daraja do something that cannot be asked twice safely (a push), so
   * an answer lost after the request may have left is reported as uncertain, not as a refusal.
   */
  private async send(
    method: string,
    path: string,
    authorization: string,
    payload?: unknown,
    acts = false,
  ): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.options.baseUrl), {
        method,
        headers: {
          authorization,
          ...(payload === undefined ? {} : { "content-type": "application/json" }),
        },
        body: payload === undefined ? undefined : JSON.stringify(payload),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 15_000),
      });
    } catch (error) {
      const message = error instanceof Error ? describeNetworkError(error) : String(error);
      throw new DarajaError(0, "network", message, undefined, acts && !neverConnected(error));
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      // The connection broke (or timed out) in the middle of the answer.
      const message = error instanceof Error ? describeNetworkError(error) : String(error);
      throw new DarajaError(0, "network", message, undefined, acts);
    }
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const parsed = errorBody.safeParse(body);
      // Daraja's own error body is a clean refusal (it says what it did not do), except its generic
      // internal error, which may come after the push went out.
      if (parsed.success)
        throw new DarajaError(
          response.status,
          parsed.data.errorCode,
          parsed.data.errorMessage ?? "",
          parsed.data.requestId,
          acts && parsed.data.errorCode === "500.003.1001",
        );
      // A 5xx page from something in front of Daraja (gateway error, overload): the request may have
      // been passed on before the answer failed.
      throw new DarajaError(
        response.status,
        `http_${response.status}`,
        text.slice(0, 200),
        undefined,
        acts && response.status >= 500,
      );
    }
    if (body === null)
      throw new DarajaError(response.status, "bad_response", "answer is not JSON", undefined, acts);
    return body;
  }
}

/** `fetch failed` says nothing: the cause's code (ECONNRESET, UND_ERR_SOCKET, ...) does. */
function describeNetworkError(error: Error): string {
  const code = (error.cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? `${error.message} (${code})` : error.message;
}
