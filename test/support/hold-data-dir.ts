import { openDatabase } from "../../src/db/client.ts";

/**
 * `node --import tsx test/support/hold-data-dir.ts <DATA_DIR> [exit]`: another process with the
 * embedded database open. Prints "opened", then keeps it open until killed, or with `exit` leaves
 * at once by `process.exit` without closing it.
 */
const [dataDir = "", then] = process.argv.slice(2);
await openDatabase({ dataDir });
console.log("opened");
if (then === "exit") process.exit(0);
setInterval(() => {}, 60_000);
