import { randomUUID } from "node:crypto";

/** A caller's (or proxy's) request id is kept when it is short and plain; anything else is replaced. */
const wellFormed = /^[A-Za-z0-9._-]{1,64}$/;

export const requestIdHeader = "X-Request-Id";

/** The incoming `X-Request-Id` when well-formed, else a new one. */
export function requestIdFrom(incoming: string | undefined): string {
  return incoming && wellFormed.test(incoming) ? incoming : randomUUID();
}
