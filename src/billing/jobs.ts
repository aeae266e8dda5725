import type { Executor } from "../db/client.ts";
import { type BillingContext, systemActor } from "./context.ts";
import { sendRemindersInTx, suspendOverdueInTx } from "./dunning.ts";
import { purgeIdempotencyKeys } from "./idempotency.ts";
import { issueRecurringInvoicesInTx } from "./invoicing.ts";
import { expireVouchersInTx } from "./vouchers.ts";

export interface BillingJob {
  name: string;
  /** croner pattern (seconds field first is optional). */
  schedule: string;
  run(tx: Executor, ctx: BillingContext): Promise<Record<string, number>>;
}

export const billingJobs: BillingJob[] = [
  {
    name: "invoicing",
    schedule: "*/15 * * * *",
    run: (tx, ctx) => issueRecurringInvoicesInTx(tx, ctx, systemActor("invoicing")),
  },
  {
    name: "reminders",
    schedule: "5,35 * * * *",
    run: (tx, ctx) => sendRemindersInTx(tx, ctx, systemActor("reminders")),
  },
  {
    name: "suspensions",
    schedule: "*/10 * * * *",
    run: (tx, ctx) => suspendOverdueInTx(tx, ctx, systemActor("suspensions")),
  },
  {
    name: "voucher-expiry",
    schedule: "*/5 * * * *",
    run: (tx, ctx) => expireVouchersInTx(tx, ctx, systemActor("voucher-expiry")),
  },
  {
    name: "idempotency-keys-purge",
    schedule: "23 * * * *",
    run: (tx, ctx) => purgeIdempotencyKeys(tx, ctx.clock.now()),
  },
];
