/**
 * `npm run bench -- B1` runs bench/b1.ts against the PostgreSQL server in DATABASE_URL.
 * Each benchmark module default-exports `run(databaseUrl)` returning its figures; the figures are
 * printed as the last line, one JSON object, so scripts can read them.
 */
const id = (process.argv[2] ?? "").toUpperCase();
if (!/^B\d+$/.test(id)) {
  console.error("usage: npm run bench -- B1   (B1 … B6)");
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
  default: (databaseUrl: string) => Promise<Record<string, unknown>>;
};
const figures = await benchmark.default(databaseUrl);
console.log(JSON.stringify({ id, ...figures }));
process.exit(0);

export {};
