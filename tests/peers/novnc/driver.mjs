// Drives noVNC in headless Chromium against xo-server's console route, for xo-server's test
// `console::novnc_in_chromium_shows_the_console_and_types` (xo-server/tests/api/console.rs).
//
//   node driver.mjs '{"ws": "ws://127.0.0.1:P/api/consoles/<vm id>", "token": "<XO token>",
//                     "outDir": "/tmp/…", "chromium": "/usr/bin/chromium"}'
//
// Serves index.html and noVNC's ES modules (npm @novnc/novnc) from a static server on 127.0.0.1:0, sets the
// `token` cookie for 127.0.0.1 (cookies are not port-specific, so the page's WebSocket to xo-server carries it),
// opens the page and waits for noVNC's `connect` and `desktopname` events. Then answers one JSON command per
// stdin line with one JSON line on stdout:
//   {"cmd":"capture","name":"x"} → screenshot <outDir>/x.png and the canvas' RGBA pixels <outDir>/x.rgba
//   {"cmd":"type","text":"abc"}  → page.keyboard.type(text) into the focused noVNC canvas
//   {"cmd":"state"}              → noVNC's state (connected, disconnected, desktopName)
//   {"cmd":"quit"}
// The first line is {"event":"ready",…} or {"error":…} (then exit 1). Everything ends within bounded waits.

import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize, extname, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const NOVNC = join(HERE, "..", "node_modules", "@novnc", "novnc");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".json": "application/json" };
// Generous: Chromium may start slowly on a loaded 2-core CI machine.
const WAIT_MS = 60000;

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const config = JSON.parse(process.argv[2] || "{}");
for (const k of ["ws", "token", "outDir"]) {
  if (!config[k]) {
    out({ error: `missing config key ${k}` });
    process.exit(2);
  }
}
const executablePath = config.chromium || "/usr/bin/chromium";
if (!existsSync(join(NOVNC, "core", "rfb.js"))) {
  out({ error: `noVNC not found in ${NOVNC}: run scripts/setup-peers.sh` });
  process.exit(2);
}

/** Static files: / → index.html, /novnc/… → the noVNC package (no path escapes). */
function serveStatic(req, res) {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  let file = null;
  if (path === "/" || path === "/index.html") {
    file = join(HERE, "index.html");
  } else if (path.startsWith("/novnc/")) {
    const rel = normalize(path.slice("/novnc/".length));
    if (!rel.startsWith("..") && !rel.includes(`${sep}..`)) file = join(NOVNC, rel);
  }
  try {
    if (!file) throw new Error("not found");
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  }
}

const server = createServer(serveStatic);
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const pageUrl = `http://127.0.0.1:${server.address().port}/?ws=${encodeURIComponent(config.ws)}`;

const profile = mkdtempSync(join(tmpdir(), "xo-console-chromium-"));
let context = null;
const log = [];

async function shutdown(code) {
  try {
    if (context) await context.close();
  } catch {}
  server.close();
  try {
    rmSync(profile, { recursive: true, force: true });
  } catch {}
  process.exit(code);
}

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    timeout: WAIT_MS,
    viewport: { width: 640, height: 400 },
    deviceScaleFactor: 1,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  await context.addCookies([
    { name: "token", value: config.token, domain: "127.0.0.1", path: "/", httpOnly: true, sameSite: "Lax" },
  ]);
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(pageUrl, { timeout: WAIT_MS });
  await page.waitForFunction(
    () => window.consoleTest && (window.consoleTest.disconnected || (window.consoleTest.connected && window.consoleTest.desktopName)),
    null,
    { timeout: WAIT_MS },
  );
  const state = await page.evaluate(() => window.consoleTest);
  if (!state.connected) {
    out({ error: "noVNC did not connect", state, log });
    await shutdown(1);
  }
  out({ event: "ready", desktopName: state.desktopName, page: pageUrl });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      out({ error: `bad command: ${e.message}` });
      continue;
    }
    try {
      if (cmd.cmd === "capture") {
        const name = String(cmd.name || "capture").replace(/[^A-Za-z0-9_-]/g, "_");
        const png = join(config.outDir, `${name}.png`);
        await page.locator("#screen canvas").screenshot({ path: png, timeout: WAIT_MS });
        const px = await page.evaluate(() => window.consolePixels());
        if (!px) {
          out({ error: "no canvas" });
          continue;
        }
        const rgba = join(config.outDir, `${name}.rgba`);
        writeFileSync(rgba, Buffer.from(px.rgba, "base64"));
        out({ ok: true, png, rgba, width: px.width, height: px.height });
      } else if (cmd.cmd === "type") {
        await page.locator("#screen canvas").focus({ timeout: WAIT_MS });
        await page.keyboard.type(String(cmd.text), { delay: 5 });
        out({ ok: true });
      } else if (cmd.cmd === "state") {
        out({ ok: true, state: await page.evaluate(() => window.consoleTest), log });
      } else if (cmd.cmd === "quit") {
        out({ ok: true });
        break;
      } else {
        out({ error: `unknown command ${cmd.cmd}` });
      }
    } catch (e) {
      out({ error: String(e && e.message ? e.message : e), log });
    }
  }
  await shutdown(0);
} catch (e) {
  out({ error: String(e && e.message ? e.message : e), log });
  await shutdown(1);
}
