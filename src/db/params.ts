import { sql } from "drizzle-orm";

/**
 * Arrays as one parameter each: the statement text stays the same whatever the length, so its
 * prepared form is reused (see client.ts), and values may hold any character.
 */
export const intArray = (ids: readonly number[]) => sql`${`{${ids.join(",")}}`}::int[]`;
export const textArray = (values: readonly string[]) =>
  sql`array(select jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`;

/**
 * An instant as a parameter of a raw statement: postgres.js refuses a Date there once the statement
 * is prepared (client.ts), so it goes as ISO text, typed for where PostgreSQL cannot infer it.
 */
export const ts = (at: Date) => sql`${at.toISOString()}::timestamptz`;

/** Ids are `integer` columns: a number outside their range names no row (and PostgreSQL refuses it). */
export const isRowId = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && n <= 2_147_483_647;
