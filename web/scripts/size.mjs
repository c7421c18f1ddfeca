#!/usr/bin/env node
// The JS budget of the first screen: what /login (and /) load — index.html's entry script, its
// preloads and CSS — gzip-compressed, against BUDGET_JS_GZ. The editor (CodeMirror + Yjs) is a
// separate chunk loaded on /prds/<id> only. `node scripts/size.mjs` prints a table and exits 1 over
// budget; `--json` prints the figures.
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BUDGET_JS_GZ = 20 * 1024
const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist')
const gz = file => gzipSync(readFileSync(join(dist, file)), { level: 9 }).length

/** The assets index.html loads before any route runs. */
export function firstScreenAssets () {
  const html = readFileSync(join(dist, 'index.html'), 'utf8')
  const refs = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+)"/g)].map(m => m[1])
  return { js: refs.filter(f => f.endsWith('.js')), css: refs.filter(f => f.endsWith('.css')) }
}

export function sizes () {
  const { js, css } = firstScreenAssets()
  const manifest = JSON.parse(readFileSync(join(dist, '.vite', 'manifest.json'), 'utf8'))
  // The editor is its own entry, or (once feature chunks share its modules) a shared chunk "_editor-…".
  const editor = Object.entries(manifest).find(([src]) => src.endsWith('screens/editor.ts') || src.startsWith('_editor-') && src.endsWith('.js'))?.[1]?.file
  // Feature panels and the importer: each a chunk of its own, fetched when used.
  const features = Object.fromEntries(Object.entries(manifest)
    .filter(([src]) => /features\/[a-z-]+\.ts$/.test(src))
    .map(([src, entry]) => [src.replace(/^.*features\//, '').replace(/\.ts$/, ''),
      gz(entry.file) + (entry.css ?? []).reduce((n, f) => n + gz(f), 0)]))
  return {
    first_screen_js: js,
    first_screen_js_gz: js.reduce((n, f) => n + gz(f), 0),
    first_screen_css_gz: css.reduce((n, f) => n + gz(f), 0),
    editor_js_gz: editor ? gz(editor) : 0,
    features_gz: features,
    budget_js_gz: BUDGET_JS_GZ
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = sizes()
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(s))
  } else {
    const kib = n => `${(n / 1024).toFixed(1)} KiB`
    console.log(`first screen JS (gzip): ${kib(s.first_screen_js_gz)} of a ${kib(s.budget_js_gz)} budget (${s.first_screen_js.join(', ')})`)
    console.log(`first screen CSS (gzip): ${kib(s.first_screen_css_gz)}`)
    console.log(`editor chunk, loaded on /prds/<id> only (gzip): ${kib(s.editor_js_gz)}`)
    for (const [name, size] of Object.entries(s.features_gz)) console.log(`feature chunk ${name}, JS + CSS (gzip): ${kib(size)}`)
  }
  if (s.first_screen_js_gz > s.budget_js_gz) process.exitCode = 1
}
