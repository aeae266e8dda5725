import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";

/** Who did it: every use-case records its actor in the audit log. */
export interface Actor {
  kind: "system" | "admin" | "subscriber" | "webhook";
  /** Job name, admin's Telegram id, subscriber's phone, or the webhook's provider. */
  id: string;
  channel?: string;
}

export const systemActor = (job: string): Actor => ({ kind: "system", id: job });

export interface BillingSettings {
  timezone: string;
  invoiceLeadHours: number;
  reminderDays: number[];
  graceDays: number;
  downgradeMode: "period_end" | "immediate";
  unsoldVoucherDays: number;
}

export const defaultBillingSettings: BillingSettings = {
  timezone: "Africa/Nairobi",
  invoiceLeadHours: 96,
  reminderDays: [-3, -1, 0],
  graceDays: 1,
  downgradeMode: "period_end",
  unsoldVoucherDays: 90,
};

export interface BillingContext {
  db: Db;
  clock: Clock;
  settings: BillingSettings;
}

/** A use-case refused the input: the message is safe to show to the person who asked. */
export class BillingError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "BillingError";
  }
}
