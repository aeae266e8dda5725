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

/** The largest id an `integer` id column holds. */
export const MAX_ROW_ID = 2_147_483_647;

/** Ids are `integer` columns: a number outside their range names no row (and PostgreSQL refuses it). */
export const isRowId = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && n <= MAX_ROW_ID;

/**
 * An id as typed or carried in a button (decimal digits, nothing else): null when it is not one an
 * id column can hold, so that it is refused before it reaches the database.
 */
export function parseRowId(text: string): number | null {
  if (!/^\d{1,20}$/.test(text)) return null;
  const n = Number(text);
  return isRowId(n) ? n : null;
}
