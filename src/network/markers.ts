/**
 * Everything Tandao creates on a router carries one of these in its `comment`; entries without one
 * belong to the router's admin and are never changed or removed.
 */
export type MarkerKind = "sub" | "voucher" | "plan";

export const subscriptionMarker = (id: number) => `tandao:sub:${id}`;
export const voucherMarker = (id: number) => `tandao:voucher:${id}`;
export const planMarker = (id: number) => `tandao:plan:${id}`;

export function parseMarker(comment: string | undefined): { kind: MarkerKind; id: number } | null {
  const match = /^tandao:(sub|voucher|plan):(\d+)(?!\d)/.exec(comment ?? "");
  if (!match) return null;
  return { kind: match[1] as MarkerKind, id: Number(match[2]) };
}

export function isOurs(comment: string | undefined): boolean {
  return parseMarker(comment) !== null;
}
