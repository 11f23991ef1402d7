// run_onnx.js MODEL.onnx DATA.safetensors OUT.safetensors: runs an exported gradc model with ONNX Runtime (onnxruntime-node) on every sample of DATA's input tensor, in batches of the model's static batch (the last one padded), and writes the outputs as safetensors; with --time N it instead prints the median session.run time over N runs of one batch.
'use strict';
const fs = require('fs');
const path = require('path');

function requireOrt() {
  const dirs = [process.env.GRADC_NODE_MODULES, path.join(__dirname, '..', '..', 'build', 'node', 'node_modules')];
  for (const d of dirs) {
    if (d && fs.existsSync(path.join(d, 'onnxruntime-node'))) return require(path.join(d, 'onnxruntime-node'));
  }
  return require('onnxruntime-node');
}

const DTYPES = { F32: [Float32Array, 'float32'], I32: [Int32Array, 'int32'], I64: [BigInt64Array, 'int64'] };

function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [Arr] = DTYPES[e.dtype];
    const bytes = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    const copy = new Uint8Array(bytes); // aligned copy
    out[name] = { dtype: e.dtype, shape: e.shape, data: new Arr(copy.buffer, 0, copy.byteLength / Arr.BYTES_PER_ELEMENT) };
  }
  return out;
}

function writeSafetensors(file, tensors) {
  const header = {};
  let offset = 0;
  const parts = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = JSON.stringify(header);
  while ((json.length + 8) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...parts]));
}

async function main() {
  const args = process.argv.slice(2);
  const timeAt = args.indexOf('--time');
  const timeRuns = timeAt >= 0 ? Number(args.splice(timeAt, 2)[1]) : 0;
  const [modelPath, dataPath, outPath] = args;
  const ort = requireOrt();
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const inName = session.inputNames[0];
  const data = readSafetensors(dataPath);
  const x = data[inName];
  if (!x) throw new Error(`${dataPath}: no tensor '${inName}' (the model's input)`);
  // The model's static input shape: [B, ...sample].
  const meta = session.inputMetadata ? session.inputMetadata[0] : null;
  const B = Number(process.env.GRADC_ONNX_BATCH || (meta && meta.shape ? meta.shape[0] : 0));
  if (!B) throw new Error('the batch size is unknown: set GRADC_ONNX_BATCH');
  const [Arr, ortType] = DTYPES[x.dtype];
  const N = x.shape[0], per = x.data.length / N;
  if (timeRuns > 0) {
    const feed = { [inName]: new ort.Tensor(ortType, x.data.slice(0, B * per), [B, ...x.shape.slice(1)]) };
    await session.run(feed);
    const times = [];
    for (let r = 0; r < timeRuns; ++r) {
      const t0 = process.hrtime.bigint();
      await session.run(feed);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    console.log(`ms_per_run ${times[Math.floor(times.length / 2)].toFixed(4)}`);
    return;
  }
  const outputs = {};
  for (let start = 0; start < N; start += B) {
    const cnt = Math.min(B, N - start);
    const batch = new Arr(B * per);
    batch.set(x.data.subarray(start * per, (start + cnt) * per));
    const res = await session.run({ [inName]: new ort.Tensor(ortType, batch, [B, ...x.shape.slice(1)]) });
    for (const name of session.outputNames) {
      const t = res[name];
      const oper = t.data.length / B;
      if (!outputs[name]) outputs[name] = { dtype: 'F32', shape: [N, ...t.dims.slice(1)], data: new Float32Array(N * oper) };
      outputs[name].data.set(t.data.subarray(0, cnt * oper), start * oper);
    }
  }
  writeSafetensors(outPath, outputs);
  console.log(`onnxruntime ${ort.env && ort.env.versions ? JSON.stringify(ort.env.versions) : ''}: ${N} samples of '${inName}' in batches of ${B}`);
}

main().catch((e) => {
  console.error(`run_onnx.js: error: ${e.message}`);
  process.exit(1);
});
