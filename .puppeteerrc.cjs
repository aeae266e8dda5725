/**
 * whatsapp-web.js pulls in the full puppeteer, whose install step would download a Chrome build.
 * Tandao never uses that download (the channel runs the system's Chromium, WHATSAPP_WEB_CHROMIUM),
 * and a machine that cannot reach the download host must still install: skip it here, where every
 * `npm install`/`npm ci` of the project finds it (puppeteer reads this file from the project root).
 */
module.exports = {
  skipDownload: true,
};
