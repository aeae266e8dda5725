/**
 * The few Workers runtime types the entry uses, declared here so that the project needs no
 * `@cloudflare/workers-types` (its globals would clash with `@types/node` in one tsconfig).
 */

/** A Hyperdrive binding: a pooled PostgreSQL connection string for this request. */
export interface Hyperdrive {
  readonly connectionString: string;
}

/** What a Cron Trigger hands to `scheduled`. */
export interface ScheduledController {
  /** The time the run was scheduled for (ms since the epoch). */
  readonly scheduledTime: number;
  /** The Cron Trigger's pattern, exactly as written in wrangler.toml. */
  readonly cron: string;
  noRetry(): void;
}

export interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
}

/** The Worker's bindings: Hyperdrive plus the same settings the Node service reads (vars and secrets). */
export interface WorkerEnv {
  HYPERDRIVE: Hyperdrive;
  [setting: string]: unknown;
}
