/** Half of a UTF-16 surrogate pair without its other half. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Text PostgreSQL can store: its JSON refuses U+0000 and half a surrogate pair (`\ud800` alone),
 * either of which a person (or a fuzzer) can send. U+0000 is dropped; a lone half becomes U+FFFD.
 */
export const storableText = (text: string): string =>
  text.replaceAll("\u0000", "").replace(LONE_SURROGATE, "\ufffd");
