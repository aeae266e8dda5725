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
  sandbox: "https://sandbox.safaricom.co.ke",
  production: "https://api.safaricom.co.ke",
} as const;

/** A refusal from Daraja (its `errorCode`/`errorMessage`), or a transport failure (`errorCode` "network"). */
export class DarajaError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    readonly errorMessage: string,
    readonly requestId?: string,
  ) {
    super(`Daraja ${errorCode}: ${errorMessage}`);
    this.name = "DarajaError";
  }

  /** Worth trying again later: the network, spike arrest, an expired token, a busy subscriber, 5xx. */
  get retryable(): boolean {
    if (this.errorCode === "network" || this.errorCode === "404.001.03") return true;
    return this.status >= 500 || this.status === 429;
  }

  /** An STK query for a push M-Pesa has not finished yet. */
  get stillProcessing(): boolean {
    return this.errorCode === "500.001.1001" && /process/i.test(this.errorMessage);
  }
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
    const body = await this.send("GET", "/oauth/v1/generate?grant_type=client_credentials", `Basic ${basic}`);
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
    const body = await this.authorized("/mpesa/stkpush/v1/processrequest", payload);
    const parsed = stkPushAccepted.safeParse(body);
    if (!parsed.success)
      throw new DarajaError(502, "bad_response", "STK push answer without CheckoutRequestID");
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

  /** One retry with a fresh token when Daraja says the cached one is no longer valid. */
  private async authorized(path: string, payload: unknown): Promise<unknown> {
    try {
      return await this.send("POST", path, `Bearer ${await this.accessToken()}`, payload);
    } catch (error) {
      if (!(error instanceof DarajaError) || error.errorCode !== "404.001.03") throw error;
      this.token = null;
      return this.send("POST", path, `Bearer ${await this.accessToken()}`, payload);
    }
  }

  private async send(
    method: string,
    path: string,
    authorization: string,
    payload?: unknown,
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
      throw new DarajaError(0, "network", error instanceof Error ? error.message : String(error));
    }
    const text = await response.text();
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const parsed = errorBody.safeParse(body);
      if (parsed.success)
        throw new DarajaError(
          response.status,
          parsed.data.errorCode,
          parsed.data.errorMessage ?? "",
          parsed.data.requestId,
        );
      throw new DarajaError(response.status, `http_${response.status}`, text.slice(0, 200));
    }
    if (body === null) throw new DarajaError(response.status, "bad_response", "answer is not JSON");
    return body;
  }
}
