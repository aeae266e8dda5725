import { mpesaCallbacks } from "../db/schema/index.ts";
import type { Actor, BillingContext } from "./context.ts";
import { recordPaymentByReferenceInTx } from "./payments.ts";
export interface C2bConfirmation {
  transId: string;
  billRef: string;
  amountCents: number;
  payerName?: string;
  receivedAt?: Date;
  raw: unknown;
}

/**
 * A paybill/till payment made from the phone's menu. The account typed by the payer decides whose
 * it is; an unknown one waits in the unmatched queue. The MSISDN arrives masked, so it is not used.
 */
export async function recordC2bConfirmation(
  ctx: BillingContext,
  actor: Actor,
  input: C2bConfirmation,
): Promise<{ paymentId: number; duplicate: boolean; matched: boolean; customerId: number | null }> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const recorded = await recordPaymentByReferenceInTx(tx, ctx, actor, {
      reference: input.billRef,
      method: "mpesa_c2b",
      provider: "mpesa",
      providerRef: input.transId,
      amountCents: input.amountCents,
      payerName: input.payerName,
      receivedAt: input.receivedAt ?? now,
    });
    await tx.insert(mpesaCallbacks).values({
      kind: "c2b_confirmation",
      reference: input.transId,
      body: (input.raw ?? {}) as Record<string, unknown>,
      flag: recorded.duplicate ? "duplicate" : recorded.matched ? null : "unmatched",
      receivedAt: now,
    });
    return recorded;
  });
}
