// Caches the app shell (index.html and the hashed assets) so that a PRD reopened without a network
// still opens and shows its local copy (IndexedDB). The API and the WebSocket are never cached.
const CACHE = 'prdtool-shell-v1'

// Every built file (Vite's manifest lists them, the lazily loaded editor chunk included).
const precache = async () => {
  const cache = await caches.open(CACHE)
  const files = new Set(['/index.html'])
  try {
    const manifest = await (await fetch('/.vite/manifest.json', { cache: 'no-store' })).json()
    for (const entry of Object.values(manifest)) for (const file of [entry.file, ...(entry.css ?? [])]) files.add('/' + file)
  } catch { /* a dev server has no manifest */ }
  await cache.addAll([...files])
}

self.addEventListener('install', event => { event.waitUntil(precache().then(() => self.skipWaiting())) })
self.addEventListener('activate', event => { event.waitUntil(self.clients.claim()) })

self.addEventListener('fetch', event => {
  const request = event.request
  const url = new URL(request.url)
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/') || url.pathname === '/ws') return
  if (request.mode === 'navigate') { // network first, so a new deployment is picked up at once
    event.respondWith(fetch(request).then(response => {
      const copy = response.clone()
      if (response.ok) caches.open(CACHE).then(cache => cache.put('/index.html', copy))
      return response
    }).catch(() => caches.match('/index.html')))
  } else if (url.pathname.startsWith('/assets/')) { // content-hashed: cache first
    event.respondWith(caches.match(request).then(hit => hit ?? fetch(request).then(response => {
      const copy = response.clone()
      if (response.ok) caches.open(CACHE).then(cache => cache.put(request, copy))
      return response
    })))
  }
})
