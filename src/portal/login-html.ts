/**
 * The `login.html` an admin uploads to the router's hotspot folder (Files → hotspot/login.html,
 * replacing the router's own). The router fills in the `$(…)` variables and the page sends the
 * browser on to the portal, which keeps them and logs the device in by opening
 * `$(link-login-only)` with the credentials. Without JavaScript a button does the same.
 */
export function hotspotLoginHtml(options: { portalUrl: string; ispName: string }): string {
  const action = escapeAttribute(options.portalUrl);
  const isp = escapeText(options.ispName);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="pragma" content="no-cache">
<meta http-equiv="expires" content="-1">
<title>${isp} Wi-Fi</title>
</head>
<body style="font-family: sans-serif; color: #1a1a1a; background: #ffffff;">
<form name="portal" action="${action}" method="get">
<input type="hidden" name="link-login-only" value="$(link-login-only)">
<input type="hidden" name="dst" value="$(link-orig)">
<input type="hidden" name="mac" value="$(mac)">
<input type="hidden" name="ip" value="$(ip)">
<input type="hidden" name="username" value="$(username)">
<input type="hidden" name="error" value="$(error)">
<noscript><p>${isp}: <button type="submit">Continue / Endelea</button></p></noscript>
</form>
<script>document.portal.submit();</script>
</body>
</html>
`;
}

function escapeText(value: string): string {
  return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function escapeAttribute(value: string): string {
  return escapeText(value).replace(/"/g, "&quot;").replace(/\$/g, "&#36;");
}
