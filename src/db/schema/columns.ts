import { type SQL, sql } from "drizzle-orm";
import { type AnyPgColumn, bigint, integer, timestamp } from "drizzle-orm/pg-core";

/** Money is always integer minor units (KES cents). `mode: "number"` is exact up to 2^53 cents. */
export const cents = (name: string) => bigint(name, { mode: "number" });

export const id = () => integer("id").primaryKey().generatedAlwaysAsIdentity();

export const at = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const createdAt = () => at("created_at").notNull().defaultNow();

/**
 * An account reference as the payer typed it, compared the way `normaliseAccountReference`
 * (src/billing/accounts.ts) reads it: no spaces, no leading `#`, upper case. Indexes and queries
 * must use this very expression for the index to serve them.
 */
export const typedReference = (column: AnyPgColumn | SQL): SQL =>
  sql`upper(regexp_replace(regexp_replace(${column}, '[[:space:]]+', '', 'g'), '^#+', ''))`;
