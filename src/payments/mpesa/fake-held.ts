import type { ServerResponse } from "node:http";
import { acceptPush, outcomeResults, type PushRecord, type StkOutcome } from "./fake-push.ts";
import { answerPush, receiptNumber, stkCallbackBody } from "./fake-support.ts";

/**
 * The Daraja fake's held mode, for the sandbox simulator: a push that nothing scripted waits for a
 * person to answer the prompt (pay with a PIN, wrong PIN, cancel, ignore) instead of succeeding on
 * its own; undecided, it times out as M-Pesa's prompt does (ResultCode 1037).
 */

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

/** What held mode shares with the fake it runs in. */
export interface HeldPushHost {
  readonly shortcode: string;
  /** The fake's accepted pushes, where the STK query finds a held one. */
  readonly pushes: PushRecord[];
  /** When the prompt on each number closes (ms); a held one stays open until it is decided. */
  readonly promptsOpenUntil: Map<string, number>;
  /** Posts a decided prompt's callback the way the fake posts all its callbacks. */
  postCallbackSoon(url: string, body: unknown): void;
}

interface HeldPush {
  push: PushRecord;
  since: Date;
  timer: NodeJS.Timeout;
}

export class HeldPushes {
  /** Whether pushes that nothing scripted are held. */
  on = false;
  private readonly waiting = new Map<string, HeldPush>();

  constructor(
    private readonly host: HeldPushHost,
    private readonly timeoutMs: number,
  ) {}

  /** Prompts waiting for the payer, oldest first; for one number when given (with or without `+`). */
  pending(msisdn?: string): PendingPush[] {
    const wanted = msisdn?.replace(/\D/g, "");
    return [...this.waiting.values()]
      .filter((p) => wanted === undefined || p.push.msisdn === wanted)
      .map((p) => ({
        checkoutRequestId: p.push.checkoutRequestId,
        msisdn: p.push.msisdn,
        amount: p.push.amount,
        accountReference: p.push.accountReference,
        shortcode: this.host.shortcode,
        heldSince: p.since,
      }));
  }

  /** Ends a held prompt with `outcome` and posts its callback; false when no such prompt waits. */
  decide(checkoutRequestId: string, outcome: StkOutcome): boolean {
    const waiting = this.waiting.get(checkoutRequestId);
    if (!waiting) return false;
    this.waiting.delete(checkoutRequestId);
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
    this.host.promptsOpenUntil.delete(push.msisdn);
    this.host.postCallbackSoon(push.callbackUrl, push.body);
    return true;
  }

  /** Accepts a push that waits for `decide`, or for the timeout. */
  hold(
    res: ServerResponse,
    input: { msisdn: string; amount: number; reference: string; callbackUrl: string },
  ) {
    const { merchantRequestId, checkoutRequestId, accepted } = acceptPush();
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
    this.host.pushes.push(push);
    this.host.promptsOpenUntil.set(input.msisdn, Number.POSITIVE_INFINITY);
    // Not among the fake's timers: its `idle()` waits for callbacks due, not for a person to decide.
    const timer = setTimeout(() => this.decide(checkoutRequestId, "unreachable"), this.timeoutMs);
    this.waiting.set(checkoutRequestId, { push, since: new Date(), timer });
    answerPush(res, "ok", accepted);
  }

  /** Stops the timeouts of the prompts still waiting, and forgets them. */
  clear(): void {
    for (const waiting of this.waiting.values()) clearTimeout(waiting.timer);
    this.waiting.clear();
  }
}
