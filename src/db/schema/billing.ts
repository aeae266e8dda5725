import { sql } from "drizzle-orm";
import { check, index, integer, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, cents, createdAt, id, typedReference } from "./columns.ts";
import { customers } from "./customers.ts";
import { subscriptions } from "./subscriptions.ts";

export const invoiceKinds = ["recurring", "proration", "voucher", "manual"] as const;
export const invoiceStatuses = ["open", "paid", "void"] as const;

export const invoices = pgTable(
  "invoices",
  {
    id: id(),
    customerId: integer("customer_id")
      .notNull()
      .references(() => customers.id),
    subscriptionId: integer("subscription_id").references(() => subscriptions.id),
    kind: text("kind", { enum: invoiceKinds }).notNull(),
    periodStart: at("period_start"),
    periodEnd: at("period_end"),
    amountCents: cents("amount_cents").notNull(),
    /** How much of the invoice the customer's credit has settled, oldest invoice first. */
    paidCents: cents("paid_cents").notNull().default(0),
    status: text("status", { enum: invoiceStatuses }).notNull().default("open"),
    dueAt: at("due_at").notNull(),
    issuedAt: at("issued_at").notNull(),
    paidAt: at("paid_at"),
  },
  (t) => [
    // One recurring invoice per subscription and period: a rerun of the invoice job creates nothing.
    uniqueIndex("invoices_recurring_period_uq")
      .on(t.subscriptionId, t.periodStart)
      .where(sql`${t.kind} = 'recurring'`),
    index("invoices_customer_open_idx").on(t.customerId, t.dueAt).where(sql`${t.status} = 'open'`),
    // Settling reads a customer's paid invoices not due yet (see settleOpenInvoices).
    index("invoices_customer_paid_idx").on(t.customerId, t.dueAt).where(sql`${t.status} = 'paid'`),
    check("invoices_amount_nonneg", sql`${t.amountCents} >= 0`),
    check("invoices_paid_range", sql`${t.paidCents} >= 0 and ${t.paidCents} <= ${t.amountCents}`),
  ],
);

export const invoiceLines = pgTable(
  "invoice_lines",
  {
    id: id(),
    invoiceId: integer("invoice_id")
      .notNull()
      .references(() => invoices.id),
    description: text("description").notNull(),
    amountCents: cents("amount_cents").notNull(),
  },
  (t) => [index("invoice_lines_invoice_idx").on(t.invoiceId)],
);

export const paymentMethods = ["mpesa_stk", "mpesa_c2b", "cash", "bank", "adjustment"] as const;
export type PaymentMethod = (typeof paymentMethods)[number];

export const payments = pgTable(
  "payments",
  {
    id: id(),
    /** Null while the payment is unmatched (a paybill reference that fits no account). */
    customerId: integer("customer_id").references(() => customers.id),
    method: text("method", { enum: paymentMethods }).notNull(),
    /** `mpesa` for STK and C2B alike: both are identified by the M-Pesa receipt number. */
    provider: text("provider").notNull(),
    providerRef: text("provider_ref").notNull(),
    amountCents: cents("amount_cents").notNull(),
    phone: text("phone"),
    accountReference: text("account_reference"),
    payerName: text("payer_name"),
    /**
     * `refunded`: an unmatched payment whose money an admin gave back; `duplicate`: an unmatched one
     * shown to be the money of another payment, credited already. Neither is ever credited.
     */
    status: text("status", { enum: ["applied", "unmatched", "refunded", "duplicate"] }).notNull(),
    /** Why an unmatched payment waits for an admin (no such account, wrong amount, a sale that failed, ...). */
    holdReason: text("hold_reason"),
    receivedAt: at("received_at").notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("payments_provider_ref_uq").on(t.provider, t.providerRef),
    index("payments_unmatched_idx").on(t.receivedAt).where(sql`${t.status} = 'unmatched'`),
    // What was collected in a day or a month (/stats, /report) without reading every payment.
    index("payments_applied_received_idx").on(t.receivedAt).where(sql`${t.status} = 'applied'`),
    // Finds a push's money recorded before its checkout id was known (`checkout <id>`, src/billing/intents/credit.ts).
    index("payments_account_reference_idx").on(t.accountReference),
    // Finds a paybill payment that may be a push's money, for the push's status query (src/billing/intents/credit.ts).
    index("payments_paybill_reference_idx")
      .on(typedReference(t.accountReference), t.amountCents)
      .where(sql`${t.method} = 'mpesa_c2b'`),
    check("payments_amount_positive", sql`${t.amountCents} > 0`),
  ],
);

export const ledgerKinds = ["invoice", "payment", "credit", "adjustment"] as const;

/** A customer's balance is the sum of their entries: credits positive, charges negative. */
export const ledgerEntries = pgTable(
  "ledger_entries",
  {
    id: id(),
    customerId: integer("customer_id")
      .notNull()
      .references(() => customers.id),
    kind: text("kind", { enum: ledgerKinds }).notNull(),
    amountCents: cents("amount_cents").notNull(),
    invoiceId: integer("invoice_id").references(() => invoices.id),
    paymentId: integer("payment_id").references(() => payments.id),
    memo: text("memo").notNull(),
    createdAt: at("created_at").notNull(),
  },
  (t) => [
    index("ledger_customer_idx").on(t.customerId),
    // A payment is credited once and an invoice is charged once, whatever races above.
    uniqueIndex("ledger_payment_uq").on(t.paymentId).where(sql`${t.kind} = 'payment'`),
    uniqueIndex("ledger_invoice_uq").on(t.invoiceId).where(sql`${t.kind} = 'invoice'`),
  ],
);

export const dunningSteps = pgTable(
  "dunning_steps",
  {
    id: id(),
    invoiceId: integer("invoice_id")
      .notNull()
      .references(() => invoices.id),
    /** e.g. `remind:-3d`, `remind:0d`, `suspend` */
    step: text("step").notNull(),
    /**
     * false when a later step was already due, so this one was recorded without a message. A sent
     * step may have gone in another invoice's SMS: a customer gets one reminder per run (dunning.ts).
     */
    sent: integer("sent").notNull().default(1),
    takenAt: at("taken_at").notNull(),
  },
  (t) => [uniqueIndex("dunning_steps_invoice_step_uq").on(t.invoiceId, t.step)],
);
