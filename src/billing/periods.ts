import type { PeriodUnit } from "../db/schema/index.ts";

/**
 * Billing periods are counted from an anchor: period n runs from boundary(n) to boundary(n+1).
 * Months and days are calendar units in the ISP's time zone (a month keeps the anchor's day,
 * clamped to the month's end: Jan 31 → Feb 28 → Mar 31); hours are absolute.
 * `periodBoundarySql` computes the same boundaries inside PostgreSQL for set-based jobs.
 */
export function periodBoundary(
  anchor: Date,
  unit: PeriodUnit,
  count: number,
  n: number,
  timeZone: string,
): Date {
  if (unit === "hours") return new Date(anchor.getTime() + n * count * 3_600_000);
  const offset = zoneOffsetMs(anchor, timeZone);
  const local = new Date(anchor.getTime() + offset);
  let shifted: Date;
  if (unit === "days") {
    shifted = new Date(local.getTime());
    shifted.setUTCDate(shifted.getUTCDate() + n * count);
  } else {
    const y = local.getUTCFullYear();
    const m = local.getUTCMonth() + n * count;
    const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
    shifted = new Date(
      Date.UTC(
        y,
        m,
        Math.min(local.getUTCDate(), lastDay),
        local.getUTCHours(),
        local.getUTCMinutes(),
        local.getUTCSeconds(),
        local.getUTCMilliseconds(),
      ),
    );
  }
  // Re-apply the zone's offset at the new local time (they differ only across DST changes).
  return new Date(shifted.getTime() - zoneOffsetMs(new Date(shifted.getTime() - offset), timeZone));
}

/** How far `timeZone` is ahead of UTC at `instant`, in ms. */
export function zoneOffsetMs(instant: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
  }).formatToParts(instant);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const asUtc = Date.UTC(
    get("year"),
    get("month") - 1,
    get("day"),
    get("hour"),
    get("minute"),
    get("second"),
  );
  return asUtc - Math.floor(instant.getTime() / 1000) * 1000;
}
