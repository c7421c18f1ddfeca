import { defineConfig } from 'vitest/config'

export default defineConfig({
  build: {
    outDir: 'dist',
    target: 'es2022',
    sourcemap: false,
    manifest: true, // public/sw.js precaches what it lists
    // The editor (CodeMirror, Yjs) is its own chunk: the login and list screens never load it.
    chunkSizeWarningLimit: 600
  },
  server: {
    // `npm run dev` against `make dev` (port 3000): the API and WebSocket are proxied.
    proxy: { '/api': 'http://127.0.0.1:3000', '/ws': { target: 'ws://127.0.0.1:3000', ws: true } }
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node'
  }
})
