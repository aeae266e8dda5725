/** RouterOS durations: it accepts `3600`, `1h`, `01:00:00`, `1d2h` and prints them as `1w2d3h4m5s`. */

const units: Record<string, number> = { w: 604_800, d: 86_400, h: 3_600, m: 60, s: 1 };

export function parseDuration(text: string): number | null {
  const value = text.trim();
  if (value === "") return null;
  if (/^\d+$/.test(value)) return Number(value);
  const clock = /^(?:(\d+)d\s*)?(\d+):(\d{1,2}):(\d{1,2})$/.exec(value);
  if (clock) {
    return (
      Number(clock[1] ?? 0) * 86_400 + Number(clock[2]) * 3_600 + Number(clock[3]) * 60 + Number(clock[4])
    );
  }
  if (!/^(\d+[wdhms])+$/.test(value)) return null;
  let total = 0;
  for (const [, n, unit] of value.matchAll(/(\d+)([wdhms])/g)) total += Number(n) * units[unit!]!;
  return total;
}

export function formatDuration(seconds: number): string {
  if (seconds <= 0) return "0s";
  let rest = Math.floor(seconds);
  let out = "";
  for (const [unit, size] of Object.entries(units)) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}
