import type { Actor, BillingContext } from "../../billing/context.ts";
import { callbacksBeforeSend } from "../../billing/intents/callbacks.ts";
import {
  claimIntentsToSend,
  type IntentToSend,
  markIntentSendFailed,
  markIntentSent,
} from "../../billing/intents/dispatch.ts";
import { settleStkResult } from "../../billing/intents/settle.ts";
import { toWholeShillingsUp } from "../../billing/money.ts";
import type { Logger } from "../../logger.ts";
import { DarajaError, type DarajaFailureKind, type StkGateway } from "./daraja.ts";
import { parseStkCallback, stkResultFromCallback, toMsisdn } from "./wire.ts";

export interface DispatcherOptions {
  ctx: BillingContext;
  gateway: StkGateway;
  logger: Logger;
  /** Where Daraja posts the result of each push. */
  callbackUrl: string;
  /** What the payer sees as the reason (≤ 13 characters). */
  description?: string;
  pollMs?: number;
  /** Tries per intent for transient and uncertain failures (a busy subscriber is tried until `maxAgeMs`). */
  maxAttempts?: number;
  baseBackoffMs?: number;
  /** The longest wait between two tries of one intent. */
  maxBackoffMs?: number;
  /** A prompt that could not go out within this long is dropped: a late prompt only confuses. */
  maxAgeMs?: number;
  batchSize?: number;
  /** How long new pushes wait after Daraja refused our credentials. */
  configPauseMs?: number;
  /** First wait before storing an accepted push's checkout id again (doubles each time, 5 tries). */
  storeRetryMs?: number;
}

const actor: Actor = { kind: "system", id: "stk-dispatcher" };

/**
 * Sends pending intents to M-Pesa, outside any transaction and outside the request that asked for
 * them. `kick()` after `requestPayment` sends at once; the poll loop catches anything missed and the
 * retries.
 *
 * The rule it keeps: a payer is never told a payment failed while M-Pesa may have accepted the push.
 * A push whose answer was lost (or whose attempt left no record, see `claimIntentsToSend`) marks the
 * intent uncertain; it may be tried again (the payer may then see two prompts; settlement credits
 * whichever is paid), and when the dispatcher gives up on it, it times out without a failure SMS.
 * Only an intent whose pushes were all cleanly refused fails with the SMS. A busy subscriber (another
 * prompt open) is retried until the prompt would be too late; wrong credentials fail the intent and
 * pause all sending for `configPauseMs`, then one push probes whether the settings were fixed.
 */
export class StkDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Clock time (ms) before which no push is sent: Daraja refused our credentials. */
  private pausedUntil = 0;
  /** After such a pause, one intent per round until Daraja answers anything but "wrong credentials". */
  private probing = false;

  constructor(private readonly options: DispatcherOptions) {}

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => this.kick(), this.options.pollMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  /** Runs a dispatch round now (or right after the current one). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        while ((await this.runOnce()) > 0 && !this.stopped) {}
      } catch (error) {
        this.options.logger.error({ err: error }, "STK dispatch round failed");
      }
    } while (this.again && !this.stopped);
  }

  /** One round: claims due intents and sends them concurrently. Returns how many it handled. */
  async runOnce(): Promise<number> {
    const { ctx } = this.options;
    if (ctx.clock.now().getTime() < this.pausedUntil) return 0;
    const limit = this.probing ? 1 : (this.options.batchSize ?? 20);
    const batch = await claimIntentsToSend(ctx, { limit });
    await Promise.all(batch.map((intent) => this.send(intent)));
    return batch.length;
  }

  private async send(intent: IntentToSend): Promise<void> {
    const { ctx, gateway } = this.options;
    if (ctx.clock.now().getTime() > this.deadline(intent)) {
      await this.giveUp(intent, "too late to prompt", false);
      return;
    }
    let accepted: Awaited<ReturnType<typeof gateway.stkPush>>;
    try {
      accepted = await gateway.stkPush({
        msisdn: toMsisdn(intent.phone),
        amountShillings: toWholeShillingsUp(intent.amountCents),
        accountReference: intent.accountReference,
        description: this.options.description ?? "Internet",
        callbackUrl: this.options.callbackUrl,
      });
    } catch (error) {
      await this.refused(intent, error);
      return;
    }
    this.probing = false;
    await this.recordAccepted(intent, accepted.MerchantRequestID, accepted.CheckoutRequestID);
  }

  /** The last moment a prompt for this intent still makes sense. */
  private deadline(intent: IntentToSend): number {
    return intent.createdAt.getTime() + (this.options.maxAgeMs ?? 120_000);
  }

  private async refused(intent: IntentToSend, error: unknown): Promise<void> {
    const { ctx, logger } = this.options;
    // Anything but a DarajaError (a bug, a wrapper's failure after the call) says nothing about
    // whether the push went out, so it counts as uncertain.
    const kind: DarajaFailureKind = error instanceof DarajaError ? error.kind : "uncertain";
    const message =
      error instanceof DarajaError ? `${error.errorCode}: ${error.errorMessage}` : String(error);
    if (kind !== "configuration") this.probing = false;
    if (kind === "configuration" && error instanceof DarajaError) this.pauseForConfiguration(error);

    const now = ctx.clock.now().getTime();
    const backoff = Math.min(
      this.options.maxBackoffMs ?? 15_000,
      (this.options.baseBackoffMs ?? 1000) * 2 ** (intent.attempt - 1),
    );
    const triesLeft = intent.attempt < (this.options.maxAttempts ?? 4);
    const retry =
      now + backoff <= this.deadline(intent) &&
      (kind === "busy" || ((kind === "uncertain" || kind === "transient") && triesLeft));
    const uncertain = kind === "uncertain";
    logger.warn(
      {
        intentId: intent.id,
        attempt: intent.attempt,
        error: message,
        kind,
        // A busy phone after an uncertain attempt is most likely showing our own earlier prompt.
        pushUncertain: uncertain || intent.pushUncertain,
        retrying: retry,
      },
      uncertain ? "STK push answer lost: M-Pesa may have prompted the payer" : "STK push refused",
    );
    if (retry)
      await markIntentSendFailed(ctx, actor, {
        intentId: intent.id,
        error: message,
        retryAt: new Date(now + backoff),
        uncertain,
      });
    else await this.giveUp(intent, message, uncertain);
  }

  private async giveUp(intent: IntentToSend, error: string, uncertain: boolean): Promise<void> {
    const result = await markIntentSendFailed(this.options.ctx, actor, {
      intentId: intent.id,
      error,
      retryAt: null,
      uncertain,
    });
    if (result === "timed_out")
      this.options.logger.info(
        { intentId: intent.id, error },
        "gave up on an STK push M-Pesa may have accepted: timed out without a failure SMS",
      );
  }

  /** Logged once per pause; the message names the settings to check, never their values. */
  private pauseForConfiguration(error: DarajaError): void {
    const { ctx, logger } = this.options;
    const now = ctx.clock.now().getTime();
    const pauseMs = this.options.configPauseMs ?? 60_000;
    const alreadyPaused = now < this.pausedUntil;
    this.pausedUntil = Math.max(this.pausedUntil, now + pauseMs);
    this.probing = true;
    if (alreadyPaused) return;
    const settings =
      error.errorCode === "400.008.01"
        ? "MPESA_CONSUMER_KEY and MPESA_CONSUMER_SECRET"
        : "MPESA_SHORTCODE, MPESA_PASSKEY and MPESA_TILL";
    logger.error(
      { errorCode: error.errorCode, errorMessage: error.errorMessage, requestId: error.requestId, pauseMs },
      `M-Pesa refused our credentials (${error.errorCode} ${error.errorMessage}): check ${settings}. ` +
        `STK pushes are paused for ${Math.round(pauseMs / 1000)} s; the refused payment was failed and its payer told.`,
    );
  }

  /**
   * The prompt is on the customer's phone now: whatever happens below, the intent must not be marked
   * failed, or the payment that follows would find no intent to settle.
   */
  private async recordAccepted(
    intent: IntentToSend,
    merchantRequestId: string,
    checkoutRequestId: string,
  ): Promise<void> {
    const { ctx, logger } = this.options;
    const sent = { intentId: intent.id, merchantRequestId, checkoutRequestId };
    for (let attempt = 1; ; attempt++) {
      try {
        await markIntentSent(ctx, sent);
        break;
      } catch (error) {
        if (attempt >= 5) {
          logger.error({ err: error, ...sent }, "STK push accepted but its checkout id could not be stored");
          // Best effort: without its checkout id the intent cannot be settled by its callback, but it
          // must not be failed or prompted again; it times out as uncertain and stays matchable.
          await this.giveUp(intent, "accepted by M-Pesa; checkout id not stored", true).catch(
            (cause: unknown) =>
              logger.error({ err: cause, ...sent }, "marking the push uncertain failed too"),
          );
          return;
        }
        await new Promise((resolve) =>
          setTimeout(resolve, (this.options.storeRetryMs ?? 400) * 2 ** (attempt - 1)),
        );
      }
    }
    try {
      await this.settleEarlyCallbacks(checkoutRequestId);
    } catch (error) {
      logger.error({ err: error, ...sent }, "settling a callback that came before the push's answer failed");
    }
  }

  /** A callback that beat the push's own answer was recorded as unknown: settle it now. */
  private async settleEarlyCallbacks(checkoutRequestId: string): Promise<void> {
    for (const body of await callbacksBeforeSend(this.options.ctx.db, checkoutRequestId)) {
      const parsed = parseStkCallback(body);
      if (parsed)
        await settleStkResult(
          this.options.ctx,
          { kind: "webhook", id: "mpesa" },
          stkResultFromCallback(parsed, null, body),
        );
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
