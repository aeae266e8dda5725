import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/logger.ts";

/** A logger whose lines (JSON, one per entry) are kept in `lines`, as written. */
export function capturingLogger(level = "info"): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, logger: createLogger(level, sink) };
}
