/** Half of a UTF-16 surrogate pair without its other half. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Text PostgreSQL can store: its JSON refuses U+0000 and half a surrogate pair (`\ud800` alone),
 * either of which a person (or a fuzzer) can send. U+0000 is dropped; a lone half becomes U+FFFD.
 */
export const storableText = (text: string): string =>
  text.replaceAll("\u0000", "").replace(LONE_SURROGATE, "\ufffd");

/**
 * Text as `storableText`, but U+0000 becomes U+FFFD instead of vanishing: in a payment body, dropping
 * it would join what it separated (`7\u000000.00` would read as 700.00, `TransAmount\u0000` as a
 * second `TransAmount`), so a field holding one stays visibly wrong and fails its check.
 */
const storableField = (text: string): string =>
  text.replaceAll("\u0000", "\ufffd").replace(LONE_SURROGATE, "\ufffd");

/** A parsed JSON value with every string in it, keys included, made storable (`storableField`). */
export function storableJson(value: unknown): unknown {
  if (typeof value === "string") return storableField(value);
  if (Array.isArray(value)) return value.map(storableJson);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) out[storableField(key)] = storableJson(inner);
  return out;
}
