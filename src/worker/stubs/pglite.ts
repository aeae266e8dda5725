/**
 * Stands in for the embedded database (PGlite) and drizzle's PGlite driver in the Worker bundle
 * (wrangler.toml `[alias]`): src/db/client.ts imports them, but a Worker only ever talks to
 * PostgreSQL through Hyperdrive (src/worker/db.ts). Leaving PGlite out saves ~1.5 MB of bundle and
 * its WebAssembly loaders, which read files next to the module at start-up.
 */
function unavailable(): never {
  throw new Error("the embedded database (PGlite) is not available in the Worker: use Hyperdrive");
}

/** `PGlite.create()` and `new PGlite()` both refuse. */
export const PGlite = Object.assign(
  function PGlite(): never {
    return unavailable();
  },
  { create: unavailable },
);

export const drizzle = unavailable;
export const migrate = unavailable;
