import { bigint, integer, timestamp } from "drizzle-orm/pg-core";

/** Money is always integer minor units (KES cents). `mode: "number"` is exact up to 2^53 cents. */
export const cents = (name: string) => bigint(name, { mode: "number" });

export const id = () => integer("id").primaryKey().generatedAlwaysAsIdentity();

export const at = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const createdAt = () => at("created_at").notNull().defaultNow();
