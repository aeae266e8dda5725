/**
 * The ISP's colours, made readable: WCAG 2 contrast ratios, and the adjustments that keep every
 * text/background pair the portal uses at 4.5:1 or more whatever colour the ISP configured.
 */

export type Rgb = [number, number, number];

export function parseHex(colour: string): Rgb | null {
  const m = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(colour.trim());
  if (!m) return null;
  const hex = m[1]!.length === 3 ? [...m[1]!].map((c) => c + c).join("") : m[1]!;
  return [0, 2, 4].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)) as Rgb;
}

export function toHex([r, g, b]: Rgb): string {
  return `#${[r, g, b].map((v) => Math.round(v).toString(16).padStart(2, "0")).join("")}`;
}

export function luminance([r, g, b]: Rgb): number {
  const lin = (v: number) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

export function contrast(a: Rgb, b: Rgb): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [17, 17, 17];

/** White or near-black, whichever reads better on `background` (one of them always reaches 4.5:1). */
export function textOn(background: Rgb): Rgb {
  return contrast(WHITE, background) >= contrast(INK, background) ? WHITE : INK;
}

/** `colour` darkened (or lightened, on a dark background) just enough to read on `background`. */
export function readableOn(colour: Rgb, background: Rgb, ratio = 4.5): Rgb {
  const towards = luminance(background) > 0.5 ? 0 : 255;
  let current = colour;
  for (let step = 0; step < 40 && contrast(current, background) < ratio; step++) {
    current = current.map((v) => v + (towards - v) * 0.1) as Rgb;
  }
  return contrast(current, background) >= ratio ? current : textOn(background);
}

export interface PortalTheme {
  /** Page background and body text. */
  background: string;
  text: string;
  /** Secondary text (hints). */
  muted: string;
  /** The brand colour as a button background, and the text on it. */
  brand: string;
  onBrand: string;
  /** The brand colour as link/heading text on the page background. */
  accent: string;
  /** Error text on the error box's background. */
  error: string;
  errorBackground: string;
  /** Card background (plan choices) and its text. */
  card: string;
}

/** The theme from the ISP's configured colour (`#0a7d4f` when unset or unreadable as a colour). */
export function themeFrom(brandColour?: string): PortalTheme {
  const background: Rgb = [255, 255, 255];
  const card: Rgb = [245, 247, 246];
  const configured = parseHex(brandColour ?? "") ?? parseHex("#0a7d4f")!;
  // A mid-tone colour that neither white nor black text reads on at 4.5:1 is darkened until white does.
  const brand =
    contrast(textOn(configured), configured) >= 4.5 ? configured : readableOn(configured, [255, 255, 255]);
  const text: Rgb = [26, 26, 26];
  const errorBackground: Rgb = [253, 236, 236];
  return {
    background: toHex(background),
    text: toHex(text),
    muted: toHex(readableOn([95, 99, 104], card)),
    brand: toHex(brand),
    onBrand: toHex(textOn(brand)),
    accent: toHex(readableOn(brand, card)),
    error: toHex(readableOn([176, 0, 32], errorBackground)),
    errorBackground: toHex(errorBackground),
    card: toHex(card),
  };
}

/** The text/background pairs the page uses, for the accessibility check. */
export function themePairs(theme: PortalTheme): [string, string, string][] {
  return [
    ["text on background", theme.text, theme.background],
    ["text on card", theme.text, theme.card],
    ["muted on card", theme.muted, theme.card],
    ["muted on background", theme.muted, theme.background],
    ["button text on brand", theme.onBrand, theme.brand],
    ["accent on background", theme.accent, theme.background],
    ["accent on card", theme.accent, theme.card],
    ["error on error box", theme.error, theme.errorBackground],
  ];
}
