// Browser driver for isoproof.exporters.browser: one headless Chromium per process, driven by
// puppeteer-core, pages served by a static server on 127.0.0.1 (an ephemeral port), nothing
// fetched from the network. Python talks to it over stdin/stdout, one JSON object per line:
//
//   -> {"id": 1, "op": "run", "model": "/abs/m.onnx", "sets": [{"name", "dims", "b64"}],
//       "latency": {"dims1": [1, 64], "dims64": [64, 64], "runs": 50}}
//   <- {"id": 1, "ok": true, "result": {"outputs": [{"name", "dims", "b64"}], "latency": {...}}}
//
// Other ops: "mount" (serve a folder under /m/<n>/), "goto", "draw" (real pointer input through
// the DevTools protocol), "evaluate" (an expression, JSON result), "screenshot", "close".
// On startup it prints {"ready": true, "chromium": ..., "ort": ...}. Errors are answered as
// {"id", "ok": false, "error": "..."}; page errors and console errors are attached to them.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ORT_DIST = path.join(HERE, 'node_modules', 'onnxruntime-web', 'dist');
const ORT_VERSION = JSON.parse(
  fs.readFileSync(path.join(HERE, 'node_modules', 'onnxruntime-web', 'package.json'), 'utf8'),
).version;
const CHROMIUM = process.env.ISOPROOF_CHROMIUM || '/usr/bin/chromium';
const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json', '.onnx': 'application/octet-stream',
  '.css': 'text/css', '.png': 'image/png',
};
const roots = { ort: ORT_DIST, page: HERE };  // url prefix -> folder
const files = new Map();  // /f/<n> -> one file
let mounted = 0;

function resolve(urlPath) {
  const parts = decodeURIComponent(urlPath.split('?')[0]).split('/').filter(Boolean);
  if (parts[0] === 'f' && files.has(parts[1])) return files.get(parts[1]);
  const root = roots[parts[0] === 'm' ? `m/${parts[1]}` : parts[0]];
  if (!root) return null;
  const rest = parts.slice(parts[0] === 'm' ? 2 : 1);
  const full = path.resolve(root, ...rest);
  return full.startsWith(path.resolve(root) + path.sep) ? full : null;  // no ../ escapes
}

const server = http.createServer((req, res) => {
  const file = resolve(req.url);
  if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, {
    'Content-Type': MIME[path.extname(file)] || 'application/octet-stream',
    'Cache-Control': 'no-store',
  });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const BASE = `http://127.0.0.1:${server.address().port}`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'isoproof-chromium-'));
const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  userDataDir: profile,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage',
  ],
});
const page = await browser.newPage();
let pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e.message || e)));
page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
page.on('request', (r) => {  // belt and braces: only the local server is ever contacted
  if (!r.url().startsWith(BASE) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) {
    pageErrors.push(`blocked request to ${r.url()}`);
  }
});

async function openRunner() {
  await page.goto(`${BASE}/page/runner.html`, { waitUntil: 'load' });
  await page.waitForFunction('window.isoproofReady === true || window.isoproofError', { timeout: 30000 });
  const err = await page.evaluate('window.isoproofError || null');
  if (err) throw new Error(err);
}
await openRunner();
const chromiumVersion = await browser.version();

const ops = {
  async run({ model, sets, latency }) {
    if (!page.url().endsWith('/page/runner.html')) await openRunner();
    const key = String(files.size + 1);
    files.set(key, path.resolve(model));
    return page.evaluate((url, s, l) => window.isoproofRun(url, s, l), `${BASE}/f/${key}`, sets, latency || null);
  },
  async mount({ dir }) {
    mounted += 1;
    roots[`m/${mounted}`] = path.resolve(dir);
    return { url: `${BASE}/m/${mounted}/` };
  },
  async goto({ url, wait }) {
    await page.goto(url, { waitUntil: 'load' });
    if (wait) await page.waitForFunction(wait, { timeout: 30000 });
    return { url: page.url() };
  },
  async draw({ selector, strokes, steps }) {
    // strokes: [[[x, y], ...], ...] in fractions of the element's box; real mouse input, which
    // Chromium turns into pointerdown / pointermove / pointerup events on the element.
    const box = await (await page.$(selector)).boundingBox();
    const at = ([fx, fy]) => [box.x + fx * box.width, box.y + fy * box.height];
    for (const stroke of strokes) {
      await page.mouse.move(...at(stroke[0]));
      await page.mouse.down();
      for (const p of stroke.slice(1)) await page.mouse.move(...at(p), { steps: steps || 4 });
      await page.mouse.up();
    }
    return { strokes: strokes.length };
  },
  async evaluate({ expression, wait }) {
    if (wait) await page.waitForFunction(wait, { timeout: 30000 });
    return page.evaluate(expression);
  },
  async screenshot({ path: out, width, height }) {
    if (width) await page.setViewport({ width, height: height || width });
    await page.screenshot({ path: out, fullPage: true });
    return { path: out };
  },
};

function reply(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

async function shutdown(code) {
  try { await browser.close(); } catch { /* already gone */ }
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

reply({ ready: true, chromium: chromiumVersion, ort: ORT_VERSION, base: BASE });
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let msg;
  try { msg = JSON.parse(line); } catch (e) { reply({ id: null, ok: false, error: `bad JSON: ${e}` }); continue; }
  if (msg.op === 'close') break;
  pageErrors = [];
  try {
    if (!ops[msg.op]) throw new Error(`expected op in ${Object.keys(ops)}, got ${msg.op}`);
    const result = await ops[msg.op](msg);
    reply({ id: msg.id, ok: true, result, page_errors: pageErrors });
  } catch (e) {
    const detail = pageErrors.length ? ` (page: ${pageErrors.join(' | ')})` : '';
    reply({ id: msg.id, ok: false, error: String(e.message || e).split('\n')[0] + detail });
  }
}
await shutdown(0);
