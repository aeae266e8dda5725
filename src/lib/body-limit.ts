import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";

/**
 * Refuses bodies over `maxBytes` with 413. A request that says its length is judged by it at
 * once; hono's own limiter, which re-wraps the request around a counting stream (a cost every
 * keypress of every USSD session would pay), is kept for bodies sent without a length.
 */
export function limitBody(maxBytes: number): MiddlewareHandler {
  const streaming = bodyLimit({ maxSize: maxBytes, onError: (c) => c.text("Payload Too Large", 413) });
  return async (c, next) => {
    const length = c.req.header("content-length");
    if (length === undefined) return streaming(c, next);
    if (!/^\d+$/.test(length) || Number(length) > maxBytes) return c.text("Payload Too Large", 413);
    await next();
  };
}
