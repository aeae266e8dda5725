import type { Readable } from "node:stream";
import { Agent, request } from "undici";

/**
 * The `fetch` grammY calls the Bot API with. grammY reads nothing of a response but its JSON
 * (`res.json()`, whatever the status: the Bot API answers errors as JSON too), so each call goes
 * through undici's `request` on one keep-alive agent, without the Request and Response objects of a
 * whole fetch: under a webhook's load every answer is one such call, and node-fetch over
 * `http.request` (grammY's default on Node) took about a sixth of the app's busy time for them. A
 * file upload's body is grammY's multipart stream, which `request` sends as it comes.
 */
export function createBotApiFetch(): typeof fetch {
  const agent = new Agent({ keepAliveTimeout: 30_000 });
  return (async (input: string | URL, init: RequestInit = {}) => {
    const { body } = await request(input, {
      method: (init.method ?? "GET") as "POST",
      headers: init.headers as Record<string, string>,
      body: init.body as string | Readable | null,
      signal: init.signal ?? undefined,
      dispatcher: agent,
    });
    return { json: () => body.json() } as Response;
  }) as typeof fetch;
}
