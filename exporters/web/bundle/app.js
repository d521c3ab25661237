// isoproof web demo. Reads model.json (written at export from the ONNX file's input shape and
// metadata), rasterises the drawing into the model's H x W input the way the training images
// were made (ink coverage per cell, scaled to the data set's pixel range, standardised with the
// training mean and std), runs model.onnx and shows the prediction. State for tests and the
// curious: window.isoproofDemo = {ready, count, raw, input, logits, prediction}.
'use strict';
const demo = (window.isoproofDemo = { ready: false, count: 0 });
const $ = (id) => document.getElementById(id);

function fitBox(ink, width, height) {  // square box around the ink, centred
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    if (ink[y * width + x] > 0.05) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  if (x1 < 0) return null;
  const side = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  return { x: (x0 + x1 + 1) / 2 - side / 2, y: (y0 + y1 + 1) / 2 - side / 2, side };
}

// Mean ink coverage of each of the H x W cells of the (inner) box, like the 4x4-block counts of
// the 8x8 digits; a 28x28 image keeps a margin (MNIST digits sit in a 20x20 box).
function rasterise(canvas, meta) {
  const { width, height } = canvas;
  const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  const ink = new Float32Array(width * height);
  for (let i = 0; i < ink.length; i++) ink[i] = 1 - pixels[4 * i] / 255;
  const [H, W] = meta.image;
  const cells = new Float32Array(H * W);
  const box = fitBox(ink, width, height);
  if (!box) return null;
  const margin = H >= 16 ? Math.round(H * 4 / 28) : 0;
  const inner = H - 2 * margin, step = box.side / inner;
  for (let i = 0; i < inner; i++) for (let j = 0; j < inner; j++) {
    let sum = 0, n = 0;
    for (let y = Math.floor(box.y + i * step); y < box.y + (i + 1) * step; y++) {
      for (let x = Math.floor(box.x + j * step); x < box.x + (j + 1) * step; x++) {
        n += 1;
        if (x >= 0 && y >= 0 && x < width && y < height) sum += ink[y * width + x];
      }
    }
    cells[(i + margin) * W + (j + margin)] = n ? sum / n : 0;
  }
  return cells;
}

function show(meta, raw, logits) {
  const max = Math.max(...logits);
  const exp = logits.map((v) => Math.exp(v - max));
  const total = exp.reduce((a, b) => a + b, 0);
  $('prediction').textContent = String(demo.prediction);
  $('bars').innerHTML = exp.map((e, k) =>
    `<div>${k}<span class="bar" style="width:${Math.round(120 * e / total)}px"></span>${(100 * e / total).toFixed(1)}%</div>`).join('');
  const [H, W] = meta.image, seen = $('seen');
  seen.width = W; seen.height = H;
  const img = seen.getContext('2d').createImageData(W, H);
  raw.forEach((v, i) => { const c = 255 - Math.round(255 * v / meta.pixel_max); img.data.set([c, c, c, 255], 4 * i); });
  seen.getContext('2d').putImageData(img, 0, 0);
}

async function predict(session, meta, pad) {
  const cells = rasterise(pad, meta);
  if (!cells) return;
  const raw = Array.from(cells, (c) => c * meta.pixel_max);
  const input = Float32Array.from(raw, (r, i) => (r - meta.mean[i]) / meta.std[i]);
  const dims = meta.input_dims.map((d) => (d === null ? 1 : d));
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', input, dims) });
  const logits = Array.from(out[session.outputNames[0]].data);
  Object.assign(demo, { raw, input: Array.from(input), logits, prediction: logits.indexOf(Math.max(...logits)) });
  demo.count += 1;
  show(meta, raw, logits);
}

function facts(meta) {
  const rows = [['widths', meta.widths.join(' - ')], ['parameters', meta.parameters],
    ['file', `${(meta.file_size / 1024).toFixed(1)} KiB`], ['input', `[${meta.input_dims.map((d) => d ?? 'batch').join(', ')}] = ${meta.image.join(' x ')} image`],
    ['data set', meta.dataset], ['onnxruntime-web', ort.env.versions.web || '']];
  $('facts').innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join('');
  $('parity').innerHTML = '<tr><th>runtime</th><th>max |error|</th></tr>' +
    Object.entries(meta.parity).map(([k, v]) => `<tr><td>${k}</td><td>${Number(v).toExponential(1)}</td></tr>`).join('');
}

function pad(onStroke) {
  const canvas = $('pad'), ctx = canvas.getContext('2d');
  const clear = () => { ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  ctx.lineCap = ctx.lineJoin = 'round';
  ctx.strokeStyle = '#000';
  ctx.lineWidth = canvas.width / 9;
  let last = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  canvas.addEventListener('pointerdown', (e) => { canvas.setPointerCapture(e.pointerId); last = at(e); ctx.beginPath(); ctx.arc(...last, ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fillStyle = '#000'; ctx.fill(); });
  canvas.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = at(e);
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    last = p;
  });
  const end = () => { if (last) { last = null; onStroke(); } };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  $('clear').addEventListener('click', () => { clear(); $('prediction').textContent = '-'; $('bars').innerHTML = ''; });
  return canvas;
}

(async () => {
  try {
    if (location.protocol === 'file:') throw new Error('serve this folder over HTTP (see index.html): WASM cannot load from file://');
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = new URL('ort/', location.href).href;
    const meta = await (await fetch('model.json')).json();
    const session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
    facts(meta);
    let busy = Promise.resolve();
    const canvas = pad(() => { busy = busy.then(() => predict(session, meta, canvas)); });
    $('status').textContent = '';
    demo.meta = meta;
    demo.ready = true;
  } catch (e) {
    $('status').textContent = `error: ${e.message || e}`;
    demo.error = String(e.message || e);
  }
})();
