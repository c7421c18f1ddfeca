import { beforeEach, describe, expect, it, vi } from 'vitest'

// api.ts keeps the session in sessionStorage: a Map stands in for it in Node.
const store = new Map<string, string>()
vi.stubGlobal('sessionStorage', { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => { store.set(k, v) }, removeItem: (k: string) => { store.delete(k) } })
const api = await import('../src/api')

type Call = { method: string, path: string, auth: string | undefined, body: unknown }
let calls: Call[] = []
let answers: Array<(call: Call) => Response> = []
const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } })

vi.stubGlobal('fetch', async (path: string, init: RequestInit) => {
  const call = { method: init.method ?? 'GET', path, auth: (init.headers as Record<string, string>).authorization, body: init.body ? JSON.parse(String(init.body)) : undefined }
  calls.push(call)
  const answer = answers.shift()
  if (answer === undefined) throw new Error(`unexpected ${call.method} ${path}`)
  return answer(call)
})

async function loggedIn (): Promise<void> {
  answers.push(() => json(200, { access_token: 'A1', refresh_token: 'R1', expires_in: 3600 }))
  await api.login('alice', 'demo-password')
  calls = []
}

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
  calls = []
  answers = []
  store.clear()
})

describe('session', () => {
  it('logs in, keeps the tokens in sessionStorage and sends the access token', async () => {
    await loggedIn()
    expect(JSON.parse(store.get('prdtool.session') as string)).toMatchObject({ username: 'alice', accessToken: 'A1', refreshToken: 'R1' })
    answers.push(() => json(200, { items: [{ id: 'p', title: 'T', role: 'owner' }] }))
    expect(await api.api.listPrds()).toEqual([{ id: 'p', title: 'T', role: 'owner' }])
    expect(calls[0]).toMatchObject({ method: 'GET', path: '/api/prds', auth: 'Bearer A1' })
  })

  it('says what went wrong with a login in words', async () => {
    answers.push(() => json(401, { error: { code: 'invalid_credentials', message: 'incorrect username or password' } }))
    await expect(api.login('alice', 'nope')).rejects.toThrow('do not match')
    expect(api.currentSession()).toBeNull()
  })

  it('refreshes the access token on a 401 and retries once', async () => {
    await loggedIn()
    answers.push(() => json(401, { error: { code: 'unauthorized', message: 'expired' } }))
    answers.push(call => { expect(call.body).toEqual({ refresh_token: 'R1' }); return json(200, { access_token: 'A2', expires_in: 3600 }) })
    answers.push(call => { expect(call.auth).toBe('Bearer A2'); return json(200, { id: 'p', title: 'T', role: 'editor' }) })
    expect((await api.api.getPrd('p')).role).toBe('editor')
    expect(calls.map(c => c.path)).toEqual(['/api/prds/p', '/api/auth/refresh', '/api/prds/p'])
    expect(api.currentSession()?.refreshToken).toBe('R1') // kept when the refresh gives none
  })

  it('refreshes before expiry, without waiting for a 401', async () => {
    await loggedIn()
    answers.push(() => json(200, { access_token: 'A2', refresh_token: 'R2', expires_in: 3600 }))
    await vi.advanceTimersByTimeAsync(3600_000 - 60_000)
    expect(calls.map(c => c.path)).toEqual(['/api/auth/refresh'])
    expect(api.currentSession()?.accessToken).toBe('A2')
  })

  it('ends the session, and says so, when the refresh token is no good', async () => {
    await loggedIn()
    const expired = vi.fn()
    const off = api.onSessionExpired(expired)
    answers.push(() => json(401, {}))
    answers.push(() => json(401, { error: { code: 'invalid_token', message: 'bad refresh' } }))
    await expect(api.api.listPrds()).rejects.toThrow('session has expired')
    expect(expired).toHaveBeenCalledTimes(1)
    expect(api.currentSession()).toBeNull()
    off()
  })

  it('waits as Retry-After says on 429, then goes on', async () => {
    await loggedIn()
    answers.push(() => json(429, { error: { code: 'rate_limited', message: 'slow down' } }, { 'retry-after': '2' }))
    answers.push(() => json(200, { items: [] }))
    const pending = api.api.listPrds()
    await vi.advanceTimersByTimeAsync(1999)
    expect(calls).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(await pending).toEqual([])
    expect(calls).toHaveLength(2)
  })

  it('turns error bodies into messages', async () => {
    await loggedIn()
    answers.push(() => json(409, { error: { code: 'conflict', message: 'already decided' } }))
    await expect(api.api.createPrd('x', 'blank')).rejects.toMatchObject({ status: 409, code: 'conflict', message: 'already decided' })
  })

  it('logs out through POST /api/auth/logout with the access token, and forgets the session', async () => {
    await loggedIn()
    answers.push(() => new Response(null, { status: 204 }))
    await api.logout()
    expect(calls).toEqual([{ method: 'POST', path: '/api/auth/logout', auth: 'Bearer A1', body: undefined }])
    expect(store.has('prdtool.session')).toBe(false)
  })
})
