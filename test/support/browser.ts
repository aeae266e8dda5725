import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContextOptions, chromium, type Page } from "playwright-core";

/**
 * Debian's chromium through playwright-core, for the browser tests of the portal and the simulator.
 * A missing Chromium fails them with a message that says how to install it: they are never skipped,
 * so a machine without it cannot pass them unseen.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Where the browser tests leave their screenshots. */
export const SHOTS = join(process.cwd(), "artifacts", "screenshots");

const PHONE_VIEWPORT = { width: 360, height: 740 };

/**
 * Launches Chromium, after making sure it is there and that the screenshot folder exists. `args`
 * adds command-line switches (e.g. `--host-resolver-rules` to give local servers real names).
 */
export async function launchChromium(args: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `No Chromium at ${CHROMIUM}: install Debian's (apt-get install -y chromium) or set CHROMIUM_PATH. The browser tests are not skipped.`,
    );
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", ...args] });
}

/** A fresh page at phone size, in a context of its own (close it with `page.context().close()`). */
export async function phonePage(browser: Browser, options: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext({
    viewport: PHONE_VIEWPORT,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    ...options,
  });
  return context.newPage();
}
