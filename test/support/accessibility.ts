import type { Page } from "playwright-core";
import { expect } from "vitest";

/**
 * The basics of accessibility, checked in a real browser page: the `lang` attribute, a label on
 * every input, alt text on images, WCAG's 4.5:1 contrast for every visible text, and nothing wider
 * than the screen. Shared by the browser tests of the portal and the simulator.
 */

interface Accessibility {
  lang: string;
  unlabelled: string[];
  imagesWithoutAlt: number;
  lowContrast: string[];
  pairs: number;
  overflowsWidth: boolean;
}

/** The basics: labels, lang, alt texts, contrast of every visible text (WCAG 4.5:1), checked in the page: plain JavaScript, as it runs in the browser. */
const accessibilityCheck = `(() => {
    const rgb = (value) => {
      const m = value.match(/[0-9.]+/g)?.map(Number) ?? [0, 0, 0, 1];
      return [m[0] ?? 0, m[1] ?? 0, m[2] ?? 0, m[3] ?? 1];
    };
    const lum = ([r, g, b]) => {
      const lin = (v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c[3] > 0) return c;
      }
      return [255, 255, 255, 1];
    };
    const visible = (el) => {
      const box = el.getBoundingClientRect();
      return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden";
    };
    const unlabelled = [...document.querySelectorAll("input, select, textarea")]
      .filter((el) => el.type !== "hidden")
      .filter((el) => {
        const labels = el.labels;
        return (
          !(labels && labels.length > 0) &&
          !el.getAttribute("aria-label") &&
          !el.getAttribute("aria-labelledby")
        );
      })
      .map((el) => el.outerHTML);
    const lowContrast = [];
    let pairs = 0;
    for (const el of document.querySelectorAll("body *")) {
      if (!visible(el)) continue;
      const ownText = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent?.trim());
      if (!ownText) continue;
      const style = getComputedStyle(el);
      const fg = rgb(style.color);
      const bg = background(el);
      // Disabled controls are exempt (WCAG 1.4.3), but ours stay readable anyway.
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      pairs++;
      if (ratio < 4.5)
        lowContrast.push(
          \`\${el.tagName}#\${el.id} "\${el.textContent?.trim().slice(0, 30)}" \${ratio.toFixed(2)}\`,
        );
    }
    return {
      lang: document.documentElement.lang,
      unlabelled,
      imagesWithoutAlt: [...document.querySelectorAll("img")].filter((i) => !i.hasAttribute("alt")).length,
      lowContrast,
      pairs,
      overflowsWidth: document.documentElement.scrollWidth > window.innerWidth,
    };
  })()`;

function accessibility(page: Page): Promise<Accessibility> {
  return page.evaluate(accessibilityCheck) as Promise<Accessibility>;
}

/** Checks `page` as it is shown now. */
export async function expectAccessible(page: Page, lang = "en") {
  const a = await accessibility(page);
  expect(a.lang).toBe(lang);
  expect(a.unlabelled).toEqual([]);
  expect(a.imagesWithoutAlt).toBe(0);
  expect(a.lowContrast).toEqual([]);
  expect(a.pairs).toBeGreaterThan(5);
  expect(a.overflowsWidth).toBe(false);
}
