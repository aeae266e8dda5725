import type { Actor, BillingContext } from "../../billing/context.ts";
import type { SettleOutcome, StkResult } from "../../billing/intents/settle.ts";
import { recordPaybillPayment } from "../../billing/paybill.ts";
import type { Logger } from "../../logger.ts";
import type { Inbox, StoredRequest } from "../inbox.ts";
import {
  c2bBody,
  mpesaMaxCents,
  parseJsonBounded,
  parseStkCallback,
  paybillMaxCents,
  shillingsToCents,
  stkResultFromCallback,
} from "./wire.ts";

export const webhookActor: Actor = { kind: "webhook", id: "mpesa" };

export interface ProcessDeps {
  ctx: BillingContext;
  logger: Logger;
  inbox: Inbox;
  /** Our paybill or till: a confirmation for another is held for review, never credited. */
  shortcode: string | null;
  settleStk(result: StkResult): Promise<SettleOutcome>;
  onStkSettled?: (outcome: SettleOutcome) => void;
}

/**
 * Processes one stored request: parses it strictly and settles what it says. An unreadable body
 * (not JSON, nested too deep, a result code that is not an integer, an amount out of M-Pesa's
 * range) is kept with a flag for an admin and changes nothing. Throws only when settling itself
 * failed, which leaves the request in the inbox for the retry job.
 */
export async function processStoredRequest(deps: ProcessDeps, request: StoredRequest): Promise<void> {
  const json = parseJsonBounded(request.text);
  if (!json.ok) {
    await deps.inbox.markProcessed(request.id, {
      kind: request.kind,
      reference: null,
      body: null,
      flag: json.reason === "too_deep" ? "malformed_too_deep" : "malformed",
    });
    return;
  }
  if (request.kind === "stk") return processStk(deps, request.id, json.value, request.receivedAt);
  if (request.kind === "c2b_confirmation") return processConfirmation(deps, request.id, json.value);
  await deps.inbox.markProcessed(request.id, {
    kind: request.kind,
    reference: null,
    body: json.value,
    flag: null,
  });
}

async function processStk(
  deps: ProcessDeps,
  inboxId: number,
  body: unknown,
  receivedAt?: Date,
): Promise<void> {
  const parsed = parseStkCallback(body);
  if (!parsed) {
    await deps.inbox.markProcessed(inboxId, { kind: "stk", reference: null, body, flag: "malformed" });
    return;
  }
  const outcome = await deps.settleStk(stkResultFromCallback(parsed, inboxId, body, receivedAt));
  if (!["credited", "failed", "duplicate"].includes(outcome.status))
    deps.logger.warn(
      { checkoutRequestId: parsed.checkoutRequestId, outcome },
      "STK callback not credited as is",
    );
  deps.onStkSettled?.(outcome);
}

async function processConfirmation(deps: ProcessDeps, inboxId: number, body: unknown): Promise<void> {
  const parsed = c2bBody.safeParse(body);
  const amount = parsed.success ? shillingsToCents(parsed.data.TransAmount) : null;
  if (!parsed.success || amount === null || amount <= 0 || amount > paybillMaxCents) {
    await deps.inbox.markProcessed(inboxId, {
      kind: "c2b_confirmation",
      reference: parsed.success ? parsed.data.TransID : null,
      body,
      flag: parsed.success && amount !== null && amount > 0 ? "amount_out_of_range" : "malformed",
    });
    return;
  }
  const data = parsed.data;
  const payerName = [data.FirstName, data.MiddleName, data.LastName].filter(Boolean).join(" ") || undefined;
  const shortcodeOk = deps.shortcode === null || data.BusinessShortCode === deps.shortcode;
  const recorded = await recordPaybillPayment(deps.ctx, webhookActor, {
    transId: data.TransID,
    billRef: data.BillRefNumber,
    amountCents: amount,
    payerName,
    paidAt: darajaTime(data.TransTime) ?? undefined,
    holdReason: !shortcodeOk
      ? `paid to short code ${data.BusinessShortCode ?? "(none)"}, not ours: check before crediting`
      : amount > mpesaMaxCents
        ? `more than a phone may pay at once (KES ${mpesaMaxCents / 100}): a business or bank payment? check before crediting`
        : undefined,
    inboxId,
    raw: body,
  });
  if (!recorded.matched && !recorded.duplicate)
    deps.logger.info(
      { transId: data.TransID, billRef: data.BillRefNumber },
      "paybill payment waits in the unmatched queue",
    );
}

/** Daraja's `YYYYMMDDHHmmss`, in Nairobi time (UTC+3 all year). */
export function darajaTime(text: string | undefined): Date | null {
  const match = text ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(text.trim()) : null;
  if (!match) return null;
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[];
  const at = new Date(Date.UTC(y!, mo! - 1, d!, h! - 3, mi!, s!));
  return Number.isNaN(at.getTime()) ? null : at;
}
