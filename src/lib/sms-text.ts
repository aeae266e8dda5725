/**
 * What an SMS costs is its parts: 160 characters of the GSM 7-bit alphabet in one (153 a part once
 * it is split), but a single character outside it (a curly quote, an en dash, an emoji) sends the
 * whole message as UCS-2, 70 characters in one and 67 a part. Phones and Telegram type the
 * typographic punctuation without being asked: `plainPunctuation` gives it back plain, and
 * `smsParts` tells what a text will cost.
 */

const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
/** Sent as an escape and the character: two septets each. */
const GSM_EXTENSION = new Set("^{}\\[~]|€\f");

/** Typographic quotes, dashes, ellipses and spaces as their plain GSM-7 forms. */
export function plainPunctuation(text: string): string {
  return text
    .replace(/[\u2018\u2019\u201a\u201b\u02bc\u2032]/g, "'")
    .replace(/[\u201c\u201d\u201e\u201f\u2033]/g, '"')
    .replace(/[\u2010\u2011\u2012\u2013\u2014\u2015\u2212]/g, "-")
    .replace(/\u2026/g, "...")
    .replace(/[\u00a0\u2007\u2009\u200a\u202f]/g, " ");
}

export interface SmsParts {
  /** True when a character outside GSM-7 makes the whole message UCS-2. */
  unicode: boolean;
  parts: number;
}

export function smsParts(text: string): SmsParts {
  let septets = 0;
  for (const char of text) {
    if (GSM_BASIC.has(char)) septets += 1;
    else if (GSM_EXTENSION.has(char)) septets += 2;
    else {
      // UTF-16 code units: an emoji is two.
      const units = text.length;
      return { unicode: true, parts: units <= 70 ? 1 : Math.ceil(units / 67) };
    }
  }
  return { unicode: false, parts: septets <= 160 ? 1 : Math.ceil(septets / 153) };
}
