/**
 * The account reference a walk-in's push shows (a voucher paid by someone with no account), and the
 * push it names when a paybill payment quotes it. M-Pesa shows at most 12 characters: `TDW<id>` up
 * to nine digits, then `TDWX<id in base 36>`, so that no id is cut short into another's. No account
 * number starts with `TDW` (a check on customers).
 */
const DECIMAL_IDS_BELOW = 1_000_000_000;

export function walkInReference(intentId: number): string {
  return intentId < DECIMAL_IDS_BELOW ? `TDW${intentId}` : `TDWX${intentId.toString(36).toUpperCase()}`;
}

/** The intent id a normalised reference names, or null. */
export function intentIdOfWalkInReference(reference: string): number | null {
  const decimal = /^TDW(\d{1,9})$/.exec(reference);
  if (decimal) return Number(decimal[1]);
  const wide = /^TDWX([1-9A-Z][0-9A-Z]{0,6})$/.exec(reference);
  if (!wide) return null;
  const id = Number.parseInt(wide[1]!, 36);
  return id >= DECIMAL_IDS_BELOW && id <= 2_147_483_647 ? id : null;
}
