// Runs a wasm32-wasip1 program under Node's WASI (V8, the engine Envoy embeds).
// Usage: node --no-liftoff run.mjs PROGRAM.wasm (CUSTODY_MICRO_* variables are passed on)
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const wasi = new WASI({ version: 'preview1', args: ['custody-wasm-micro', 'V8 (Node, wasm32-wasip1)'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('CUSTODY_MICRO_'))), returnOnExit: true });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
