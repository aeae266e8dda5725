import { existsSync } from "node:fs";
import { Resvg } from "@resvg/resvg-js";
import { stringify } from "csv-stringify/sync";
import { parse as parseVega, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { MonthFigures } from "../billing/stats.ts";

/**
 * The `/report` attachment: a chart of the money collected per month (bars, KES) with the number of
 * subscribers on the books at each month's end (line), as a PNG, and the same figures as CSV.
 * vega-lite → vega → SVG (no canvas: vega estimates text widths) → resvg → PNG.
 */
export interface RevenueReport {
  png: Uint8Array;
  csv: string;
  /** The months shown, oldest first (`YYYY-MM`). */
  months: string[];
}

/** Width of the PNG in pixels; the height follows the chart's proportions. */
export const REPORT_WIDTH_PX = 1200;

export const CSV_HEADER = ["month", "collected_kes", "new_subscribers", "active_at_month_end"] as const;

/**
 * Fonts the chart is drawn with: the first family found on disk is loaded explicitly (Debian's
 * fonts-dejavu-core is on our machines); without any, resvg is left the system's fonts and
 * text may not render (no font is bundled).
 */
const FONT_CANDIDATES = [
  { family: "DejaVu Sans", file: "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" },
  { family: "Liberation Sans", file: "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf" },
  { family: "Noto Sans", file: "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf" },
];

export function chartFont(): { family: string; files: string[] } {
  const found = FONT_CANDIDATES.find((f) => existsSync(f.file));
  if (!found) return { family: "sans-serif", files: [] };
  const bold = found.file.replace(/(-Regular)?\.ttf$/, "-Bold.ttf");
  return { family: found.family, files: existsSync(bold) ? [found.file, bold] : [found.file] };
}

/** "1500.00" from 150000 cents, by integer arithmetic (no floating point on money). */
export function kesFromCents(cents: number): string {
  if (!Number.isSafeInteger(cents)) throw new RangeError(`not a whole number of cents: ${cents}`);
  const abs = Math.abs(cents);
  const sign = cents < 0 ? "-" : "";
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/;

export async function revenueReport(
  rows: MonthFigures[],
  options: { isp: string; month?: string },
): Promise<RevenueReport> {
  if (options.month !== undefined && !MONTH.test(options.month)) {
    throw new RangeError(`month must look like 2026-03, not ${options.month}`);
  }
  // `month`: the report ends with that month (rows after it are left out).
  const shown = rows
    .filter((r) => options.month === undefined || r.month <= options.month)
    .sort((a, b) => a.month.localeCompare(b.month));
  const csv = stringify([
    [...CSV_HEADER],
    ...shown.map((r) => [r.month, kesFromCents(r.collectedCents), r.newSubscribers, r.activeAtMonthEnd]),
  ]);
  const png = await renderChart(shown, options.isp);
  return { png, csv, months: shown.map((r) => r.month) };
}

function chartSpec(rows: MonthFigures[], isp: string, font: string): TopLevelSpec {
  const period = rows.length ? `${rows[0]!.month} to ${rows.at(-1)!.month}` : "no data";
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: `${isp}: revenue and subscribers`, subtitle: period },
    width: 640,
    height: 300,
    background: "white",
    padding: 16,
    config: { font, view: { stroke: null } },
    data: {
      values: rows.map((r) => ({
        month: r.month,
        // Chart positions only: the CSV carries the exact figures.
        kes: r.collectedCents / 100,
        active: r.activeAtMonthEnd,
      })),
    },
    encoding: { x: { field: "month", type: "ordinal", title: "Month", axis: { labelAngle: 0 } } },
    layer: [
      {
        mark: { type: "bar", color: "#4C78A8" },
        encoding: {
          y: {
            field: "kes",
            type: "quantitative",
            title: "Collected (KES)",
            axis: { titleColor: "#4C78A8", format: ",.0f" },
          },
        },
      },
      {
        mark: { type: "line", color: "#E45756", strokeWidth: 3, point: { color: "#E45756", size: 60 } },
        encoding: {
          y: {
            field: "active",
            type: "quantitative",
            title: "Subscribers at month end",
            axis: { titleColor: "#E45756", format: "d" },
          },
        },
      },
    ],
    resolve: { scale: { y: "independent" } },
  };
}

async function renderChart(rows: MonthFigures[], isp: string): Promise<Uint8Array> {
  const font = chartFont();
  const vegaSpec = compile(chartSpec(rows, isp, font.family)).spec;
  const view = new View(parseVega(vegaSpec), { renderer: "none" });
  try {
    const svg = await view.toSVG();
    const resvg = new Resvg(svg, {
      fitTo: { mode: "width", value: REPORT_WIDTH_PX },
      background: "white",
      font: {
        fontFiles: font.files,
        loadSystemFonts: font.files.length === 0,
        defaultFontFamily: font.family,
        sansSerifFamily: font.family,
      },
    });
    return new Uint8Array(resvg.render().asPng());
  } finally {
    view.finalize();
  }
}
