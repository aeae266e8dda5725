import { sql } from "drizzle-orm";
import { boolean, index, integer, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { payments } from "./billing.ts";
import { at, cents, createdAt, id } from "./columns.ts";
import { customers, languages } from "./customers.ts";
import { plans } from "./plans.ts";
import { routers } from "./routers.ts";
import { subscriptions } from "./subscriptions.ts";

export const intentPurposes = ["balance", "voucher", "plan_change"] as const;
export type IntentPurpose = (typeof intentPurposes)[number];
export const intentStatuses = ["pending", "succeeded", "failed", "cancelled", "timed_out"] as const;
export type IntentStatus = (typeof intentStatuses)[number];

/** An STK push, recorded before it is sent, so that every prompt has a known purpose and amount. */
export const paymentIntents = pgTable(
  "payment_intents",
  {
    id: id(),
    customerId: integer("customer_id").references(() => customers.id),
    phone: text("phone").notNull(),
    purpose: text("purpose", { enum: intentPurposes }).notNull(),
    amountCents: cents("amount_cents").notNull(),
    planId: integer("plan_id").references(() => plans.id),
    subscriptionId: integer("subscription_id").references(() => subscriptions.id),
    channel: text("channel").notNull(),
    channelSessionId: text("channel_session_id"),
    /**
     * The hotspot a voucher is bought at (its captive portal): the code is made for that router. Null:
     * bought from a phone (USSD, a chat), for any router until one serves it (voucher-redemption.ts).
     */
    routerId: integer("router_id").references(() => routers.id),
    /**
     * The language the payer chose in the menu, for what this payment sends them (a voucher code, a
     * failure) when they are no customer; a customer's own language wins.
     */
    language: text("language", { enum: languages }),
    /** The caller's name for this request (a menu confirmation: session and step); a repeat records nothing new. */
    idempotencyKey: text("idempotency_key"),
    status: text("status", { enum: intentStatuses }).notNull().default("pending"),
    merchantRequestId: text("merchant_request_id"),
    checkoutRequestId: text("checkout_request_id"),
    resultCode: integer("result_code"),
    resultDesc: text("result_desc"),
    paymentId: integer("payment_id").references(() => payments.id),
    /** What the success produced (voucher id, plan change id) for the follow-up messages. */
    outcome: jsonb("outcome").$type<Record<string, unknown>>(),
    /** The M-Pesa receipt once known (a success settled by a status query has none until its callback). */
    mpesaReceipt: text("mpesa_receipt"),
    /** What the payer's phone showed as the account (their account number, or `TDW<id>` for a walk-in). */
    accountReference: text("account_reference"),
    /**
     * A push attempt ended without a clear answer (network error, lost response, a crash before the
     * checkout id was stored): Daraja may have prompted the payer, so the intent is never reported
     * as failed to them, and a success for an unknown checkout can still be matched to it.
     */
    pushUncertain: boolean("push_uncertain").notNull().default(false),
    /** Push dispatch: tries so far, when the next may start (also a lease while one is under way), last error. */
    sendAttempts: integer("send_attempts").notNull().default(0),
    nextSendAt: at("next_send_at"),
    sentAt: at("sent_at"),
    lastError: text("last_error"),
    /**
     * A push timed out with no answer from M-Pesa (the status query kept failing), so it may have
     * been paid: when to ask again. Null once an answer came, or once asking stopped.
     */
    nextQueryAt: at("next_query_at"),
    /** Asked about for as long as M-Pesa keeps an answer, without one: told to the admins. */
    unresolvedAt: at("unresolved_at"),
    settledAt: at("settled_at"),
    createdAt: createdAt(),
    updatedAt: at("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("payment_intents_checkout_uq").on(t.checkoutRequestId),
    uniqueIndex("payment_intents_idempotency_uq").on(t.idempotencyKey),
    index("payment_intents_phone_idx").on(t.phone, t.createdAt),
    index("payment_intents_pending_idx").on(t.status, t.createdAt),
    index("payment_intents_session_idx").on(t.channel, t.channelSessionId, t.createdAt),
    // Finds the pushes a paybill confirmation may be M-Pesa's record of (src/billing/paybill.ts).
    index("payment_intents_awaiting_receipt_idx")
      .on(sql`upper(${t.accountReference})`, t.amountCents)
      .where(sql`${t.mpesaReceipt} is null`),
    index("payment_intents_unanswered_idx")
      .on(t.nextQueryAt)
      .where(sql`${t.status} = 'timed_out' and ${t.nextQueryAt} is not null`),
    index("payment_intents_unsent_idx")
      .on(t.nextSendAt)
      .where(sql`${t.status} = 'pending' and ${t.checkoutRequestId} is null`),
  ],
);

export const inboxStatuses = ["received", "processed", "failed"] as const;
export type InboxStatus = (typeof inboxStatuses)[number];

/**
 * The inbox of M-Pesa requests: every authentic callback is stored here as received, in its own
 * commit, before it is processed (`received`); processing marks it `processed` (with a `flag` when
 * it was not credited as is) or leaves it `failed` with the error for the retry job and an admin.
 * Status-query answers are recorded here too (`stk_query`), already processed.
 */
export const mpesaCallbacks = pgTable(
  "mpesa_callbacks",
  {
    id: id(),
    kind: text("kind", { enum: ["stk", "c2b_validation", "c2b_confirmation", "stk_query"] }).notNull(),
    reference: text("reference"),
    /** The parsed body; null when the body is not JSON, or nested too deep to parse safely. */
    body: jsonb("body"),
    /** The body's text as received (bounded by the route's size limit). */
    raw: text("raw"),
    status: text("status", { enum: inboxStatuses }).notNull().default("processed"),
    attempts: integer("attempts").notNull().default(0),
    /** A retry run holds the request until then, so that overlapping runs do not both take it. */
    retryLeaseUntil: at("retry_lease_until"),
    error: text("error"),
    /** Why the callback was not credited as is (unknown checkout id, amount mismatch, ...). */
    flag: text("flag"),
    receivedAt: at("received_at").notNull(),
    processedAt: at("processed_at"),
  },
  (t) => [
    index("mpesa_callbacks_flag_idx").on(t.flag),
    index("mpesa_callbacks_reference_idx").on(t.kind, t.reference),
    index("mpesa_callbacks_unprocessed_idx").on(t.receivedAt).where(sql`${t.status} <> 'processed'`),
  ],
);
