import type { Clock } from "../clock.ts";
import type { RouterApi } from "./connection.ts";

/**
 * A target (a subscriber's secret, a voucher's hotspot user) is written by one holder of its lease
 * at a time; once the lease ends, another instance may deliver a newer state. A command of the old
 * holder that reaches the router after that would overwrite it (a stale `disabled=yes` after a
 * restore: a paying subscriber cut off). Commands can wait without limit before they are written
 * (behind the connection's in-flight cap, or for a reconnect), so a check when the delivery starts
 * is not enough.
 *
 * So each command of a leased delivery is checked against a start-by instant right before it is
 * written, after any such wait; the start-by instant leaves the lease more time than one command
 * can take (its timeout, 10 s by default, after which its connection is closed). A command written
 * in time is answered or abandoned before the lease ends; one that would be written later is not
 * sent at all, and its target goes back to the queue, to be delivered from the database's state.
 */

/** The command was not sent: the lease of the delivery it belongs to ends too soon. */
export class LeaseExpiredError extends Error {
  override readonly name = "LeaseExpiredError";
}

/** `api`, whose commands are only written while the injected clock is at or before `startBy()`. */
export function sendWhileLeased(api: RouterApi, clock: Clock, startBy: () => number): RouterApi {
  const check = (command: string) => {
    if (clock.now().getTime() > startBy()) {
      throw new LeaseExpiredError(`${command} not sent: the lease of its delivery ends too soon`);
    }
  };
  return {
    run(command, params, options) {
      // Checked here too for an api that does not call `beforeSend`.
      check(command);
      return api.run(command, params, {
        beforeSend: () => {
          check(command);
          options?.beforeSend?.();
        },
      });
    },
  };
}
