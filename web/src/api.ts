// The HTTP API client: session tokens (memory + sessionStorage), refresh before/after expiry,
// 429 handling (Retry-After), and errors in words. Paths are those of DESIGN 3.3 / docs/openapi.json.

export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

export interface Session {
  username: string
  accessToken: string
  refreshToken: string
  /** epoch ms */
  expiresAt: number
}

export interface PrdSummary {
  id: string
  title: string
  role: Role
  status?: string
  owner?: string
  updated_at?: number
}
export interface Prd extends PrdSummary { markdown?: string }
export type Role = 'owner' | 'editor' | 'commenter' | 'viewer'
export interface Member { username: string, role: Role }
export interface Template { id: string, name: string, description?: string }

const STORAGE_KEY = 'prdtool.session'
const REFRESH_MARGIN_MS = 60_000
const MAX_429_WAITS = 3

let session: Session | null = load()
let refreshTimer: ReturnType<typeof setTimeout> | null = null
let refreshing: Promise<Session> | null = null
const expiredListeners = new Set<() => void>()

function load (): Session | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY)
    return raw === null ? null : JSON.parse(raw) as Session
  } catch {
    return null
  }
}

function store (next: Session | null): void {
  session = next
  if (next === null) sessionStorage.removeItem(STORAGE_KEY)
  else sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next))
  scheduleRefresh()
}

export const currentSession = (): Session | null => session

/** Called when the session cannot be renewed (401 after a refresh attempt). */
export function onSessionExpired (fn: () => void): () => void {
  expiredListeners.add(fn)
  return () => expiredListeners.delete(fn)
}

function expire (): void {
  store(null)
  for (const fn of [...expiredListeners]) fn()
}

function scheduleRefresh (): void {
  if (refreshTimer !== null) clearTimeout(refreshTimer)
  refreshTimer = null
  if (session === null) return
  const delay = Math.max(5_000, session.expiresAt - Date.now() - REFRESH_MARGIN_MS)
  refreshTimer = setTimeout(() => { void refresh().catch(() => {}) }, Math.min(delay, 2 ** 31 - 1))
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** Seconds to wait from a 429's Retry-After (seconds or an HTTP date), at most 30. */
export function retryAfterMs (header: string | null, now = Date.now()): number {
  if (header === null) return 1000
  const seconds = Number(header)
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now
  return Math.min(30_000, Math.max(250, Number.isFinite(ms) ? ms : 1000))
}

async function errorOf (response: Response): Promise<ApiError> {
  let code = `http_${response.status}`
  let message = response.statusText || `The server answered ${response.status}.`
  try {
    const body = await response.json() as { error?: { code?: string, message?: string } }
    if (body.error?.code !== undefined) code = body.error.code
    if (body.error?.message !== undefined) message = body.error.message
  } catch { /* not JSON */ }
  return new ApiError(response.status, code, message)
}

async function send (method: string, path: string, body: unknown, token: string | null): Promise<Response> {
  for (let waited = 0; ; waited++) {
    const headers: Record<string, string> = {}
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (token !== null) headers.authorization = `Bearer ${token}`
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    if (response.status !== 429 || waited >= MAX_429_WAITS) return response
    await sleep(retryAfterMs(response.headers.get('retry-after')))
  }
}

export async function login (username: string, password: string): Promise<Session> {
  store(null) // a new login replaces whatever session this tab had
  const response = await send('POST', '/api/auth/login', { username, password }, null)
  if (!response.ok) {
    const error = await errorOf(response)
    if (response.status === 401 || error.code === 'invalid_credentials') {
      throw new ApiError(401, error.code, 'That username and password do not match. Check them and try again.')
    }
    throw error
  }
  const tokens = await response.json() as { access_token: string, refresh_token: string, expires_in: number }
  const next = { username, accessToken: tokens.access_token, refreshToken: tokens.refresh_token, expiresAt: Date.now() + tokens.expires_in * 1000 }
  store(next)
  return next
}

/** Renews the access token with the refresh token (one request at a time). */
export async function refresh (): Promise<Session> {
  const current = session
  if (current === null) throw new ApiError(401, 'no_session', 'You are not logged in.')
  refreshing ??= (async () => {
    try {
      const response = await send('POST', '/api/auth/refresh', { refresh_token: current.refreshToken }, null)
      if (response.status === 400 || response.status === 401 || response.status === 403) {
        expire()
        throw new ApiError(401, 'session_expired', 'Your session has expired. Log in again.')
      }
      if (!response.ok) throw await errorOf(response)
      const tokens = await response.json() as { access_token: string, refresh_token?: string, expires_in: number }
      const next = { ...current, accessToken: tokens.access_token, refreshToken: tokens.refresh_token ?? current.refreshToken, expiresAt: Date.now() + tokens.expires_in * 1000 }
      store(next)
      return next
    } finally {
      refreshing = null
    }
  })()
  return await refreshing
}

/** An access token valid for at least the next half minute (refreshing it if needed). */
export async function freshToken (): Promise<string> {
  if (session === null) throw new ApiError(401, 'no_session', 'You are not logged in.')
  if (session.expiresAt - Date.now() < 30_000) return (await refresh()).accessToken
  return session.accessToken
}

/** A request with the session's token; a 401 refreshes once and retries, then ends the session. */
export async function request<T> (method: string, path: string, body?: unknown): Promise<T> {
  if (session === null) {
    expire()
    throw new ApiError(401, 'no_session', 'You are not logged in.')
  }
  let response = await send(method, path, body, await freshToken())
  if (response.status === 401) {
    await refresh() // throws (and ends the session) when the refresh token is no good either
    response = await send(method, path, body, session?.accessToken ?? null)
    if (response.status === 401) {
      expire()
      throw new ApiError(401, 'session_expired', 'Your session has expired. Log in again.')
    }
  }
  if (!response.ok) throw await errorOf(response)
  if (response.status === 204) return undefined as T
  const text = await response.text()
  return (text === '' ? undefined : JSON.parse(text)) as T
}

/** A GET with the session's token that can be aborted and is tried once (no waiting out a 429: the
 * caller reads the response, Retry-After included); a 401 refreshes once, as request does. */
export async function getResponse (path: string, signal?: AbortSignal): Promise<Response> {
  if (session === null) {
    expire()
    throw new ApiError(401, 'no_session', 'You are not logged in.')
  }
  const get = async (token: string | null): Promise<Response> =>
    await fetch(path, { headers: token === null ? {} : { authorization: `Bearer ${token}` }, signal })
  let response = await get(await freshToken())
  if (response.status === 401) {
    await refresh()
    response = await get(session?.accessToken ?? null)
    if (response.status === 401) expire()
  }
  return response
}

export async function logout (): Promise<void> {
  const token = session?.accessToken ?? null
  store(null)
  if (token !== null) await send('POST', '/api/auth/logout', undefined, token).catch(() => {})
}

export async function accessTo (prdId: string): Promise<'ok' | 'unauthorized' | 'forbidden' | 'unknown'> {
  try {
    await request('GET', `/api/prds/${encodeURIComponent(prdId)}`)
    return 'ok'
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return 'unauthorized'
    if (error instanceof ApiError && (error.status === 403 || error.status === 404)) return 'forbidden'
    return 'unknown'
  }
}

let config: Promise<{ wsUrl: string }> | null = null

/** Where the WebSocket is: /api/config's wsUrl, or this origin's /ws when both are on this machine. */
export async function wsUrl (): Promise<string> {
  config ??= fetch('/api/config').then(async r => await r.json() as { wsUrl?: string }).then(c => ({ wsUrl: pickWsUrl(c.wsUrl, location) }))
    .catch(() => { config = null; return { wsUrl: pickWsUrl(undefined, location) } })
  return (await config).wsUrl
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export function pickWsUrl (configured: string | undefined, page: { protocol: string, host: string, hostname: string }): string {
  const sameOrigin = `${page.protocol === 'https:' ? 'wss:' : 'ws:'}//${page.host}/ws`
  if (configured === undefined || configured === '') return sameOrigin
  try {
    const url = new URL(configured)
    // Locally the gateway serves both: localhost and 127.0.0.1 name the same server, so keep the page's host.
    if (LOOPBACK.has(url.hostname) && LOOPBACK.has(page.hostname)) return sameOrigin
  } catch {
    return sameOrigin
  }
  return configured
}

export type PrdMeta = Pick<Prd, 'id' | 'title' | 'role'>
const META_CACHE = 'prdtool.meta.'

export function rememberPrdMeta (meta: PrdMeta): void {
  try {
    localStorage.setItem(META_CACHE + meta.id, JSON.stringify(meta))
  } catch { /* storage full or disabled: only offline reopening suffers */ }
}

/** A PRD's title and the caller's role: from the API, or (without a network) as last seen on this device. */
export async function loadPrdMeta (id: string): Promise<PrdMeta> {
  try {
    const prd = await api.getPrd(id)
    const meta = { id, title: prd.title, role: prd.role }
    rememberPrdMeta(meta)
    return meta
  } catch (error) {
    const cached = localStorage.getItem(META_CACHE + id)
    if (!(error instanceof ApiError) && cached !== null) return JSON.parse(cached) as PrdMeta
    throw error
  }
}

export const api = {
  listPrds: async () => (await request<{ items: PrdSummary[] }>('GET', '/api/prds')).items,
  getPrd: async (id: string) => await request<Prd>('GET', `/api/prds/${encodeURIComponent(id)}`),
  createPrd: async (title: string, template: string) => await request<Prd>('POST', '/api/prds', { title, template }),
  templates: async () => await request<Template[]>('GET', '/api/templates'),
  members: async (id: string) => (await request<{ items: Member[] }>('GET', `/api/prds/${encodeURIComponent(id)}/members`)).items,
  setMember: async (id: string, username: string, role: Role) =>
    await request('PUT', `/api/prds/${encodeURIComponent(id)}/members/${encodeURIComponent(username)}`, { role }),
  removeMember: async (id: string, username: string) =>
    await request('DELETE', `/api/prds/${encodeURIComponent(id)}/members/${encodeURIComponent(username)}`)
}
