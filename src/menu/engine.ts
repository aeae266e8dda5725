import { type MessageKey, type Params, translate } from "../messaging/render.ts";
import type { SessionCache } from "./session-cache.ts";
import type {
  Language,
  MenuChoice,
  MenuHint,
  MenuServices,
  MenuSession,
  MenuSettings,
  MenuUser,
  MenuView,
  Outcome,
} from "./types.ts";

/** One screen on the navigation stack. */
export interface Frame {
  screen: string;
  params: Record<string, string | number>;
  page: number;
}

export interface MenuContext {
  user: MenuUser;
  session: MenuSession;
  services: MenuServices;
  settings: MenuSettings;
  /** The language screens are shown in; a confirmed language change updates it. */
  language: Language;
  t(key: MessageKey, params?: Params, language?: Language): string;
  /**
   * Loads once per request: replaying the inputs revisits screens and must not refetch their data.
   * Keys starting with `session:` are also kept for the rest of the conversation when a cache is given.
   */
  memo<T>(key: string, load: () => Promise<T>): Promise<T>;
}

export interface ScreenBody {
  lines: string[];
  /** Numbered choices: `key` is what the person types. */
  options?: { key: string; label: string }[];
  /** A long list, numbered 1…n across pages (`98` shows the next page). */
  list?: string[];
  /** Accepts typed text (an amount). */
  freeText?: boolean;
  /** Shown when nothing was typed on a free-text screen, instead of "Invalid choice". */
  emptyHint?: MenuHint;
  /** Closes the conversation. */
  end?: boolean;
  /** Shown in another language than the person's (the language confirmation). */
  language?: Language;
}

export type Choice =
  | { kind: "option"; key: string }
  | { kind: "item"; index: number }
  | { kind: "text"; text: string };

export type Reaction =
  | { kind: "push"; screen: string; params?: Record<string, string | number> }
  | { kind: "hint"; hint: MenuHint }
  /**
   * A confirmed action. It runs only when its confirm is the newest input, and once per session
   * step: the engine claims the step before running it and records where it led.
   */
  | { kind: "effect"; run: () => Promise<Outcome> }
  /**
   * A confirmed action whose use-case is exactly-once by itself under `key` (a unique key in the
   * database: a repeat changes nothing more), so the engine neither claims nor records the step and
   * the confirmation costs the use-case's own statement only. It runs only when its confirm is the
   * newest input. Met again in the history, it is not run: `replay` is where it led, and without
   * one the conversation had ended there.
   */
  | {
      kind: "keyedEffect";
      run: (key: string) => Promise<Outcome>;
      replay?: Outcome & { next: "home" };
      /**
       * Applies, when met again in the history, what the action changed about this conversation: the
       * user read with the request may be a copy from before it (another instance cached it).
       */
      replayed?: () => void;
    };

export interface Screen {
  body(ctx: MenuContext, frame: Frame): Promise<ScreenBody>;
  choose?(ctx: MenuContext, frame: Frame, choice: Choice): Promise<Reaction>;
}

export const HOME = "home";
/** The ISP's name as screens show it; longer names are cut (SMS show it whole). */
export const ISP_NAME_MAX = 24;
/** The support number as screens show it (`SUPPORT_PHONE`); every screen is tested with this length. */
export const SUPPORT_MAX = 20;
/** Names from the database are cut so that every screen fits, whatever an admin typed. */
export const NAME_MAX = 20;
/** A sign-up area's name (`SIGNUP_AREAS`, refused longer): shown whole, so that similar names differ. */
export const AREA_NAME_MAX = 26;

export function shortName(name: string, max = NAME_MAX): string {
  const clean = name.replace(/\s+/g, " ").trim();
  return clean.length <= max ? clean : clean.slice(0, max).trimEnd();
}
/** Room kept free on list pages for a one-line hint ("Invalid choice."). */
const HINT_RESERVE = 24;
/** USSD shows at most 182 characters; `CON ` takes four of them. */
export const SCREEN_BUDGET = 178;

const PLAIN_ASCII = /^[\x20-\x7e\n]*$/;

/** Plain printable ASCII: what every handset shows. Accents are dropped, anything else becomes `?`. */
export function toAscii(text: string): string {
  // Most screens are plain ASCII already: no need to decompose them.
  if (PLAIN_ASCII.test(text)) return text;
  return text
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(/[\u2013\u2014]/g, "-")
    .replace(/[^\x20-\x7e\n]/g, "?");
}

function navLine(ctx: MenuContext, depth: number, language: Language): string | null {
  const parts: string[] = [];
  if (depth > 1) parts.push(`0. ${ctx.t("menu.nav.back", {}, language)}`);
  if (depth > 2) parts.push(`00. ${ctx.t("menu.nav.home", {}, language)}`);
  return parts.length ? parts.join(" ") : null;
}

interface Layout {
  lines: string[];
  /** The lines that are not choices (title, text), for channels that show choices as buttons. */
  head: string[];
  /** The same choices `lines` numbers, in order: options, list items, more, back, home. */
  choices: MenuChoice[];
  /** Global indices of the list items on this page. */
  visible: number[];
  hasMore: boolean;
}

const lineSize = (line: string) => line.length + 1;

/**
 * Lays out a screen; list items are packed into pages that fit the budget with room for a hint.
 * Written with plain loops over arrays this function builds itself: it runs for every screen of
 * every message, and V8 threw its optimised code away (then spent 100-200 ms of CPU compiling it
 * again) each time a screen's body or one of its arrays came in a shape it had not met.
 */
function layout(ctx: MenuContext, body: ScreenBody, frame: Frame, depth: number): Layout {
  const language = body.language ?? ctx.language;
  const end = body.end === true;
  const head: string[] = [];
  for (const line of body.lines) head.push(toAscii(line));
  const tail: string[] = [];
  const optionChoices: MenuChoice[] = [];
  for (const option of body.options ?? []) {
    tail.push(toAscii(`${option.key}. ${option.label}`));
    optionChoices.push({ key: option.key, label: toAscii(option.label) });
  }
  const nav = end ? null : navLine(ctx, depth, language);
  if (nav) tail.push(nav);
  const navChoices: MenuChoice[] = [];
  if (!end && depth > 1) navChoices.push({ key: "0", label: toAscii(ctx.t("menu.nav.back", {}, language)) });
  if (!end && depth > 2) navChoices.push({ key: "00", label: toAscii(ctx.t("menu.nav.home", {}, language)) });
  const labels: string[] = [];
  for (const entry of body.list ?? []) labels.push(toAscii(entry));
  if (labels.length === 0)
    return {
      lines: head.concat(tail),
      head,
      choices: optionChoices.concat(navChoices),
      visible: [],
      hasMore: false,
    };

  const items = labels.map((label, i) => `${i + 1}. ${label}`);
  const more = `98. ${ctx.t("menu.nav.more", {}, language)}`;
  const budget = SCREEN_BUDGET - HINT_RESERVE;
  // A page's size as its lines joined by newlines: each line and its newline, less the last newline.
  let fixedSize = -1;
  for (const line of head) fixedSize += lineSize(line);
  for (const line of tail) fixedSize += lineSize(line);
  let start = 0;
  for (let page = 0; ; page++) {
    const taken: number[] = [];
    let takenSize = 0;
    let i = start;
    while (i < items.length) {
      const moreSize = i + 1 < items.length ? lineSize(more) : 0;
      const size = fixedSize + takenSize + lineSize(items[i]!) + moreSize;
      if (taken.length > 0 && size > budget) break;
      taken.push(i);
      takenSize += lineSize(items[i]!);
      i++;
    }
    const hasMore = i < items.length;
    if (page >= frame.page || !hasMore) {
      const lines = head.slice();
      const choices: MenuChoice[] = [];
      for (const k of taken) {
        lines.push(items[k]!);
        choices.push({ key: String(k + 1), label: labels[k]! });
      }
      if (hasMore) {
        lines.push(more);
        choices.push({ key: "98", label: toAscii(ctx.t("menu.nav.more", {}, language)) });
      }
      return {
        lines: lines.concat(tail),
        head,
        choices: choices.concat(optionChoices, navChoices),
        visible: taken,
        hasMore,
      };
    }
    start = i;
  }
}

function hintLine(ctx: MenuContext, hint: MenuHint, language: Language): string {
  return toAscii(ctx.t(hint.key, hint.params, language));
}

function outcomeView(ctx: MenuContext, outcome: Outcome & { next: "end" }): MenuView {
  return { end: true, lines: [toAscii(ctx.t(outcome.key, outcome.params))], screen: "outcome" };
}

const endWith = (ctx: MenuContext, key: MessageKey, screen: string): MenuView => ({
  end: true,
  lines: [toAscii(ctx.t(key))],
  screen,
});

export interface MenuRun {
  user: MenuUser;
  session: MenuSession;
  /** Every input of the conversation so far, oldest first (USSD: `text` split on `*`). */
  inputs: string[];
  /** Outcomes already recorded for this session, by step (read with the user, to save a query). */
  recorded?: Record<string, Outcome | "pending">;
  /** Keeps what this session read (`memo` keys starting with `session:`) across its requests. */
  cache?: SessionCache;
  /** Told when a confirmed action failed (the person sees a short apology). */
  onError?: (error: unknown, step: number) => void;
  /** Told just before a confirmed action runs (what was read about the person may change). */
  onAct?: (step: number) => void | Promise<void>;
}

/**
 * Replays the inputs through the screens from the start and shows where they lead. Navigation is
 * derived, not stored; the only thing stored is the outcome of a confirmed action, keyed by the
 * session and the input's position, so a repeated or replayed request never acts twice.
 */
export async function runMenu(
  run: MenuRun,
  screens: Record<string, Screen>,
  services: MenuServices,
  settings: MenuSettings,
): Promise<MenuView> {
  const cache = new Map<string, Promise<unknown>>();
  const ispName = shortName(settings.isp, ISP_NAME_MAX);
  const support = shortName(settings.support, SUPPORT_MAX);
  const ctx: MenuContext = {
    user: run.user,
    session: run.session,
    services,
    settings,
    language: run.user.language,
    t(key, params = {}, language) {
      return translate(
        language ?? this.language,
        key,
        { isp: ispName, support, ...params },
        settings.timezone,
      );
    },
    memo<T>(key: string, load: () => Promise<T>) {
      let value = cache.get(key) as Promise<T> | undefined;
      if (value) return value;
      const shared = key.startsWith("session:") ? `${run.session.id}|${key}` : null;
      value = shared ? run.cache?.get<T>(shared) : undefined;
      if (!value) {
        value = load();
        if (shared) run.cache?.set(shared, value);
      }
      cache.set(key, value);
      return value;
    },
  };

  let stack: Frame[] = [{ screen: HOME, params: {}, page: 0 }];
  let hint: MenuHint | undefined;
  const screenOf = (frame: Frame) => {
    const screen = screens[frame.screen];
    if (!screen) throw new Error(`no screen ${frame.screen}`);
    return screen;
  };

  for (let i = 0; i < run.inputs.length; i++) {
    const input = run.inputs[i]!.trim();
    const isLast = i === run.inputs.length - 1;
    hint = undefined;
    const frame = stack[stack.length - 1]!;
    const screen = screenOf(frame);
    const body = await screen.body(ctx, frame);
    if (body.end) break;
    if (input === "00") {
      stack = [stack[0]!];
      continue;
    }
    if (input === "0" && stack.length > 1) {
      stack.pop();
      continue;
    }
    const page = layout(ctx, body, frame, stack.length);
    if (input === "98" && page.hasMore) {
      stack[stack.length - 1] = { ...frame, page: frame.page + 1 };
      continue;
    }
    let choice: Choice | undefined;
    if (body.options?.some((o) => o.key === input)) choice = { kind: "option", key: input };
    else if (/^\d{1,3}$/.test(input) && page.visible.includes(Number(input) - 1))
      choice = { kind: "item", index: Number(input) - 1 };
    else if (body.freeText && input !== "") choice = { kind: "text", text: input };
    if (!choice || !screen.choose) {
      hint = input === "" && body.emptyHint ? body.emptyHint : { key: "menu.hint.invalid" };
      continue;
    }
    const reaction = await screen.choose(ctx, frame, choice);
    if (reaction.kind === "push") {
      stack.push({ screen: reaction.screen, params: reaction.params ?? {}, page: 0 });
      continue;
    }
    if (reaction.kind === "hint") {
      hint = reaction.hint;
      continue;
    }

    const step = i + 1;
    const act = async (work: () => Promise<Outcome>): Promise<Outcome> => {
      await run.onAct?.(step);
      try {
        return await work();
      } catch (error) {
        run.onError?.(error, step);
        return { next: "end", key: "menu.error.generic", params: {} };
      }
    };
    let outcome: Outcome | "pending" | undefined;
    if (reaction.kind === "keyedEffect") {
      const { run: work, replay } = reaction;
      if (!isLast) reaction.replayed?.();
      outcome = isLast ? await act(() => work(`${ctx.session.id}#${step}`)) : replay;
    } else if (isLast) {
      const claim = await services.claimEffect(ctx.session, ctx.user, step);
      if (claim === "claimed") {
        outcome = await act(reaction.run);
        await services.recordEffect(ctx.session, step, outcome);
      } else {
        outcome = claim;
      }
    } else {
      // A confirm that is not the newest input ran (or not) in an earlier request: never run it here.
      outcome = run.recorded?.[String(step)];
      if (outcome === undefined || outcome === "pending")
        outcome = await services.recordedOutcome(ctx.session, step);
    }
    if (outcome === undefined) return endWith(ctx, "menu.error.bad", "unconfirmed");
    if (outcome === "pending") return endWith(ctx, "menu.error.busy", "pending");
    if (outcome.next === "end") return outcomeView(ctx, outcome);
    stack = [stack[0]!];
    if (isLast) hint = { key: outcome.notice };
  }

  const frame = stack[stack.length - 1]!;
  const body = await screenOf(frame).body(ctx, frame);
  const page = layout(ctx, body, frame, stack.length);
  const language = body.language ?? ctx.language;
  const hinted = hint && !body.end ? [hintLine(ctx, hint, language)] : [];
  return {
    end: body.end === true,
    lines: [...hinted, ...page.lines],
    screen: frame.screen,
    head: [...hinted, ...page.head],
    choices: body.end ? [] : page.choices,
  };
}
