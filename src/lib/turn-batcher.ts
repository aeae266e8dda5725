/**
 * Gathers the calls made in one turn of the event loop into one call of `run` with all their items:
 * under load, many webhooks arrive, or many sends finish, together, and one statement for all of
 * them costs the database and this process far less than one each. A quiet moment costs nothing
 * more than a `setImmediate`. Given `windowMs`, the calls made within that many milliseconds of the
 * first are gathered instead: fewer and larger statements, for work that little waits on.
 *
 * `run` returns one result per item, in the items' order, and must change nothing when it throws
 * (one statement, or one transaction). When a batch fails, each of its items is run again on its
 * own, in order, so that one item the database refuses fails only its own caller.
 */
export function createTurnBatcher<I, O>(
  run: (items: I[]) => Promise<O[]>,
  { maxItems = 500, windowMs = 0 }: { maxItems?: number; windowMs?: number } = {},
): (item: I) => Promise<O> {
  interface Waiting {
    item: I;
    resolve: (value: O) => void;
    reject: (error: unknown) => void;
  }
  let waiting: Waiting[] = [];

  const settleAlone = async (entry: Waiting) => {
    try {
      const [result] = await run([entry.item]);
      entry.resolve(result as O);
    } catch (error) {
      entry.reject(error);
    }
  };

  const runPart = async (part: Waiting[]) => {
    let results: O[];
    try {
      results = await run(part.map((entry) => entry.item));
    } catch {
      // One after the other, in the order called (two steps of one chat keep theirs).
      for (const entry of part) await settleAlone(entry);
      return;
    }
    if (results.length !== part.length) {
      const error = new Error(`a batch of ${part.length} gave ${results.length} results`);
      for (const entry of part) entry.reject(error);
      return;
    }
    for (const [index, entry] of part.entries()) entry.resolve(results[index] as O);
  };

  const flush = () => {
    const batch = waiting;
    waiting = [];
    for (let start = 0; start < batch.length; start += maxItems) {
      const part = batch.slice(start, start + maxItems);
      void (part.length === 1 ? settleAlone(part[0]!) : runPart(part));
    }
  };

  return (item) =>
    new Promise<O>((resolve, reject) => {
      if (waiting.length === 0) {
        if (windowMs > 0) setTimeout(flush, windowMs);
        else setImmediate(flush);
      }
      waiting.push({ item, resolve, reject });
    });
}
