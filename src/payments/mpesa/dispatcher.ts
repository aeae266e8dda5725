import type { Actor, BillingContext } from "../../billing/context.ts";
import { callbacksBeforeSend } from "../../billing/intents/callbacks.ts";
import {
  claimIntentsToSend,
  type IntentToSend,
  intentAccountReference,
  markIntentSendFailed,
  markIntentSent,
} from "../../billing/intents/dispatch.ts";
import { settleStkResult } from "../../billing/intents/settle.ts";
import { toWholeShillingsUp } from "../../billing/money.ts";
import type { Logger } from "../../logger.ts";
import { DarajaError, type StkGateway } from "./daraja.ts";
import { parseStkCallback, toMsisdn } from "./wire.ts";

export interface DispatcherOptions {
  ctx: BillingContext;
  gateway: StkGateway;
  logger: Logger;
  /** Where Daraja posts the result of each push. */
  callbackUrl: string;
  /** What the payer sees as the reason (≤ 13 characters). */
  description?: string;
  pollMs?: number;
  maxAttempts?: number;
  baseBackoffMs?: number;
  /** A prompt that could not go out within this long is dropped: a late prompt only confuses. */
  maxAgeMs?: number;
  batchSize?: number;
}

const actor: Actor = { kind: "system", id: "stk-dispatcher" };

/**
 * Sends pending intents to M-Pesa, outside any transaction and outside the request that asked for
 * them. `kick()` after `requestPayment` sends at once; the poll loop catches anything missed and the
 * retries. Transient Daraja errors are retried with exponential backoff; the rest fail the intent.
 */
export class StkDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;

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
    const batch = await claimIntentsToSend(this.options.ctx, { limit: this.options.batchSize ?? 20 });
    await Promise.all(batch.map((intent) => this.send(intent)));
    return batch.length;
  }

  private async send(intent: IntentToSend): Promise<void> {
    const { ctx, gateway, logger } = this.options;
    const now = ctx.clock.now();
    if (now.getTime() - intent.createdAt.getTime() > (this.options.maxAgeMs ?? 120_000)) {
      await markIntentSendFailed(ctx, actor, {
        intentId: intent.id,
        error: "too late to prompt",
        retryAt: null,
      });
      return;
    }
    let accepted: Awaited<ReturnType<typeof gateway.stkPush>>;
    try {
      accepted = await gateway.stkPush({
        msisdn: toMsisdn(intent.phone),
        amountShillings: toWholeShillingsUp(intent.amountCents),
        accountReference: await intentAccountReference(ctx.db, intent.id),
        description: this.options.description ?? "Internet",
        callbackUrl: this.options.callbackUrl,
      });
    } catch (error) {
      const darajaError = error instanceof DarajaError ? error : null;
      const message = darajaError ? `${darajaError.errorCode}: ${darajaError.errorMessage}` : String(error);
      const retry = darajaError?.retryable && intent.attempt < (this.options.maxAttempts ?? 4);
      const retryAt = retry
        ? new Date(
            ctx.clock.now().getTime() + (this.options.baseBackoffMs ?? 1000) * 2 ** (intent.attempt - 1),
          )
        : null;
      logger.warn(
        { intentId: intent.id, attempt: intent.attempt, error: message, retrying: !!retry },
        "STK push refused",
      );
      await markIntentSendFailed(ctx, actor, { intentId: intent.id, error: message, retryAt });
      return;
    }
    // The prompt is on the customer's phone now: whatever happens below, the intent must not be
    // marked failed, or the payment that follows would find no intent to settle.
    const sent = {
      intentId: intent.id,
      merchantRequestId: accepted.MerchantRequestID,
      checkoutRequestId: accepted.CheckoutRequestID,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        await markIntentSent(ctx, sent);
        break;
      } catch (error) {
        if (attempt >= 5) {
          logger.error({ err: error, ...sent }, "STK push accepted but its checkout id could not be stored");
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
      }
    }
    try {
      await this.settleEarlyCallbacks(accepted.CheckoutRequestID);
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
          { ...parsed, source: "callback", raw: body },
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
