/**
 * `npm run bench -- B1` runs bench/b1.ts against the PostgreSQL server in DATABASE_URL.
 * Each benchmark module default-exports `run(databaseUrl)` returning its figures; the figures are
 * printed as the last line, one JSON object, so scripts can read them.
 */
const id = (process.argv[2] ?? "").toUpperCase();
if (!/^B\d+$/.test(id)) {
  console.error("usage: npm run bench -- B1   (B1 … B9; B1 takes --subscriptions N)");
  process.exit(2);
}
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error(
    "DATABASE_URL must point at a PostgreSQL server (benchmarks create and drop their own database)",
  );
  process.exit(2);
}
const benchmark = (await import(`./${id.toLowerCase()}.ts`)) as {
  default: (databaseUrl: string, args: string[]) => Promise<Record<string, unknown>>;
};
// What follows the id (`npm run bench -- B1 --subscriptions 1000000`) is the benchmark's own.
const figures = await benchmark.default(databaseUrl, process.argv.slice(3));
console.log(JSON.stringify({ id, ...figures }));
process.exit(0);

export {};
