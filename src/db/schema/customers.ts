import { sql } from "drizzle-orm";
import { check, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { createdAt, id } from "./columns.ts";

export const customerStatuses = ["active", "inactive"] as const;
export const languages = ["en", "sw"] as const;
export type Language = (typeof languages)[number];

export const customers = pgTable(
  "customers",
  {
    id: id(),
    /** Printed on the customer's receipt and typed as the M-Pesa paybill "account number". */
    accountNumber: text("account_number").notNull(),
    /** E.164, e.g. +254712345678 */
    phone: text("phone").notNull(),
    name: text("name").notNull(),
    language: text("language", { enum: languages }).notNull().default("en"),
    status: text("status", { enum: customerStatuses }).notNull().default("active"),
    /**
     * The chat channel the customer chose for notices (receipts, reminders, credentials…): the chat
     * linked on that channel gets them. Null, or no such link any more: SMS.
     */
    notifyChannel: text("notify_channel", { enum: ["telegram", "whatsapp", "whatsapp_cloud"] }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("customers_account_number_uq").on(sql`upper(${t.accountNumber})`),
    uniqueIndex("customers_phone_uq").on(t.phone),
    // `TDW<n>` is the account reference of a walk-in's push (payment intent n): never an account.
    check("customers_account_not_walk_in", sql`upper(${t.accountNumber}) not like 'TDW%'`),
    check("customers_phone_e164", sql`${t.phone} ~ '^\\+[1-9][0-9]{7,14}$'`),
  ],
);
