import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { clientScript } from "./client.ts";

export interface SimulatorPageModel {
  ispName: string;
  serviceCode: string;
  demoPhone: string;
  strangerPhone: string;
  pollMs: number;
  chats: { telegram: boolean; whatsapp: boolean };
}

/** JSON for a `<script>`: nothing in it can close the element. */
const json = (value: unknown) =>
  raw(
    JSON.stringify(value)
      .replace(/</g, "\\u003c")
      .replace(/\u2028/g, "\\u2028")
      .replace(/\u2029/g, "\\u2029"),
  );

// Every text colour here is at least 4.5:1 against the background it sits on (WCAG AA).
const css = `*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#f4f4f0}
header{background:#0b3d2c;color:#fff;padding:10px 14px}header h1{margin:0;font-size:1.2rem}
header p{margin:4px 0 0;font-size:.9rem;color:#fff}
main{padding:10px;display:grid;gap:12px;max-width:1200px;margin:0 auto}
@media (min-width:900px){main{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}.pick,.tabs{grid-column:1/-1}}
h2{font-size:1.05rem;margin:0 0 6px}h3{font-size:.95rem;margin:10px 0 4px}
.card{background:#fff;border:1px solid #c9c9c0;border-radius:10px;padding:10px;min-width:0}
button{font:inherit;border-radius:8px;border:0;padding:8px 12px;cursor:pointer;background:#33403a;color:#fff;min-height:40px}
button:focus-visible,input:focus-visible{outline:3px solid #b35c00;outline-offset:2px}
.choices{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:8px}
form.other{display:flex;flex-wrap:wrap;gap:6px;align-items:end}
label{font-weight:600;font-size:.9rem}
input{font:inherit;padding:7px 8px;border:1px solid #6b6b63;border-radius:6px;background:#fff;color:#1b1b1b;max-width:100%}
.error{color:#a4161a;margin:4px 0;min-height:0}
.tabs{display:flex;flex-wrap:wrap;gap:4px}
.tabs [role=tab]{background:#e4e4dc;color:#1b1b1b;border:1px solid #9a9a90}
.tabs [role=tab][aria-selected=true]{background:#0b3d2c;color:#fff;border-color:#0b3d2c}
.handset{background:#26292b;border-radius:26px;padding:16px 14px 14px;max-width:300px;margin:0 auto;color:#fff}
.brand{margin:0 0 6px;text-align:center;font-size:.8rem;letter-spacing:.1em;color:#fff}
.screen{background:#cfe0c3;color:#111;border-radius:6px;padding:8px;min-height:170px;border:3px solid #101214}
.lcd-status{display:flex;justify-content:space-between;margin:0 0 4px;font-size:.75rem;color:#111}
.ussd{white-space:pre-wrap;word-break:break-word;margin:0;font:14px/1.3 ui-monospace,Menlo,Consolas,monospace;color:#111}
.prompt p{margin:0 0 6px;color:#111}.prompt label{display:block;color:#111}
.prompt input{width:6em;letter-spacing:.3em}
.prompt-buttons{display:grid;grid-template-columns:1fr 1fr;gap:5px;margin-top:6px}
.prompt-buttons button{padding:6px;min-height:36px}
.keypad-label{display:block;margin:10px 0 3px;color:#fff}
.keypad{width:100%;font:18px ui-monospace,Menlo,Consolas,monospace}
.keys{display:grid;grid-template-columns:1fr 1fr;gap:8px;margin-top:8px}
.go{background:#0a6b3f;color:#fff}.stop{background:#a4161a;color:#fff}
.meta{font-size:.8rem;color:#fff;margin:6px 0 0}
.sms,.chat-log{list-style:none;margin:0;padding:0;display:grid;gap:6px}
.sms li,.chat-log li{background:#eef3ee;border-radius:8px;padding:6px 8px;word-break:break-word;color:#1b1b1b}
.chat-log li.me{background:#dfe9f7}
.muted{color:#4a4a44;font-size:.85rem}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.85rem}
caption{text-align:left;font-weight:700;padding:6px 0 3px}
th,td{text-align:left;border-bottom:1px solid #d4d4cc;padding:4px 6px;word-break:break-word}
td.no{color:#0a6b3f;font-weight:700}td.yes{color:#a4161a;font-weight:700}
fieldset{border:0;padding:0;margin:0 0 6px;display:flex;gap:10px;flex-wrap:wrap}
legend{font-weight:600;font-size:.9rem;padding:0}
.chat-form{display:flex;flex-wrap:wrap;gap:6px;align-items:end;margin-top:6px}
[hidden]{display:none!important}`;

export function simulatorPage(m: SimulatorPageModel): HtmlEscapedString | Promise<HtmlEscapedString> {
  return html`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox simulator · ${m.ispName}</title>
<style>${raw(css)}</style>
</head>
<body>
<header>
<h1>Sandbox simulator</h1>
<p>${m.ispName} with built-in fakes: no real money, SMS or router. Dial ${m.serviceCode}.</p>
</header>
<main>
<section class="card pick" aria-labelledby="pick-h">
<h2 id="pick-h">Open a phone</h2>
<div class="choices">
<button type="button" data-open="${m.demoPhone}">Demo subscriber ${m.demoPhone}</button>
<button type="button" data-open="${m.strangerPhone}">Stranger ${m.strangerPhone}</button>
</div>
<form class="other" id="open-other">
<div><label for="other-phone">Other phone number</label><br><input id="other-phone" type="tel" inputmode="tel" autocomplete="off" placeholder="+2547…"></div>
<button type="submit">Open phone</button>
</form>
<p class="error" id="open-error" role="alert"></p>
</section>
<div class="tabs" role="tablist" aria-label="Open phones" id="tabs"></div>
<div id="panels"></div>
<section class="card router" aria-labelledby="router-h">
<h2 id="router-h">Router</h2>
<p class="muted" id="router-note">The emulated MikroTik, read every few seconds.</p>
<div class="table-wrap"><table id="secrets"><caption>PPPoE secrets</caption><thead><tr><th scope="col">Name</th><th scope="col">Profile</th><th scope="col">Disabled</th></tr></thead><tbody></tbody></table></div>
<div class="table-wrap"><table id="ppp-active"><caption>Active PPPoE sessions</caption><thead><tr><th scope="col">Name</th><th scope="col">Address</th><th scope="col">Uptime</th></tr></thead><tbody></tbody></table></div>
<div class="table-wrap"><table id="hotspot-users"><caption>Hotspot users</caption><thead><tr><th scope="col">Name</th><th scope="col">Profile</th><th scope="col">Limit</th><th scope="col">Disabled</th></tr></thead><tbody></tbody></table></div>
<div class="table-wrap"><table id="hotspot-active"><caption>Hotspot sessions</caption><thead><tr><th scope="col">User</th><th scope="col">Address</th><th scope="col">Uptime</th></tr></thead><tbody></tbody></table></div>
</section>
</main>
<script>window.SIMULATOR=${json(m)};</script>
<script>${raw(clientScript)}</script>
</body>
</html>`;
}
