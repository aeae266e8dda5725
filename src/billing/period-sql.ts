import { type SQL, sql } from "drizzle-orm";

/**
 * SQL twin of `periodBoundary` (periods.ts) for set-based jobs: boundary n of a period counted from
 * `anchor`. PostgreSQL's month arithmetic clamps to the month's end like the TypeScript version;
 * a test checks that both agree.
 */
export function periodBoundarySql(anchor: SQL, unit: SQL, count: SQL, n: SQL, timeZone: string): SQL {
  return sql`(case ${unit}
    when 'hours' then ${anchor} + make_interval(hours => (${n}) * ${count})
    when 'days' then ((${anchor} at time zone ${timeZone}) + make_interval(days => (${n}) * ${count})) at time zone ${timeZone}
    else ((${anchor} at time zone ${timeZone}) + make_interval(months => (${n}) * ${count})) at time zone ${timeZone}
  end)`;
}
